"""Release a container image to AWS ECR: the library behind ``tasks.py``.

Nothing here imports boto3 or botocore at module level, so ``inv --list`` stays fast.
"""
