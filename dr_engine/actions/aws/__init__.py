"""AWS actions (Route 53, RDS, DynamoDB, S3, Secrets Manager, CloudFormation, Auto Scaling,
CloudWatch): :mod:`.base` holds what they share (region/account targeting, IAM permissions)."""
