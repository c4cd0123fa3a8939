"""Batch summarisation in DynamoDB: the items and queues (`entities`), and `store.DynamoBatchStore`."""
