"""Benchmarks for wechat-token: ``python -m bench`` (``make bench``) writes bench/results.md.

Every measure runs against local stand-ins only: DynamoDB Local (or moto) and the WeChat
simulator on loopback. Nothing here talks to real AWS or WeChat.
"""
