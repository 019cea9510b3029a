"""AWS providers: the only place dr-engine imports boto3/botocore (lazily, inside functions).

``session`` builds clients per region (credential chain, profile, optional ``endpoint_url``,
bounded retries and timeouts); ``errors`` classifies every failure into the taxonomy; one module
per service wraps the few calls the actions need and returns plain Python data.
"""
