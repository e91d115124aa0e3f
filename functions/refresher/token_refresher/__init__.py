"""The refresher's service: the only component that calls WeChat's token endpoints."""
