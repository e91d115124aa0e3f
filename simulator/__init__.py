"""A faithful local simulator of WeChat's (and WeCom's) token APIs.

In-process::

    sim = WeChatSimulator(ManualClock())
    sim.add_app("wx123", "s3cret")
    client = httpx.Client(transport=sim.transport(), base_url="https://api.weixin.qq.com")

Over HTTP on loopback: ``with SimulatorServer(sim) as server: server.base_url``,
or ``python -m simulator --port 0 --app wx123:s3cret``.
"""

from simulator.calllog import CallRecord
from simulator.clock import Clock, ManualClock, RunningClock, SystemClock
from simulator.faults import FAULT_KINDS, Fault, FaultKind, parse_fault_spec
from simulator.platform import (
    AUTHORIZER_LIST,
    AUTHORIZER_TOKEN,
    CLEAR_QUOTA,
    COMPONENT_ENDPOINTS,
    COMPONENT_TOKEN,
    QUERY_AUTH,
    START_PUSH_TICKET,
    AuthorizationGrant,
    PlatformSimulator,
    PushDelivery,
)
from simulator.ratelimit import MINUTE_LIMIT_SCOPES, MINUTE_QUOTA_ERRMSG
from simulator.server import SimulatorServer
from simulator.wechat import (
    BUSINESS_ENDPOINTS,
    CLASSIC_TOKEN,
    LIMITED_ENDPOINTS,
    MP_TICKET,
    STABLE_TOKEN,
    TICKET_ENDPOINTS,
    TOKEN_ENDPOINTS,
    WECOM_AGENT_TICKET,
    WECOM_CORP_TICKET,
    WECOM_TOKEN,
    Pool,
    QuotaExceededError,
    SimResponse,
    WeChatSimulator,
    fingerprint,
    wechat_day,
)

__all__ = [
    "AUTHORIZER_LIST",
    "AUTHORIZER_TOKEN",
    "BUSINESS_ENDPOINTS",
    "CLASSIC_TOKEN",
    "CLEAR_QUOTA",
    "COMPONENT_ENDPOINTS",
    "COMPONENT_TOKEN",
    "FAULT_KINDS",
    "LIMITED_ENDPOINTS",
    "MINUTE_LIMIT_SCOPES",
    "MINUTE_QUOTA_ERRMSG",
    "MP_TICKET",
    "QUERY_AUTH",
    "STABLE_TOKEN",
    "START_PUSH_TICKET",
    "TICKET_ENDPOINTS",
    "TOKEN_ENDPOINTS",
    "WECOM_AGENT_TICKET",
    "WECOM_CORP_TICKET",
    "WECOM_TOKEN",
    "AuthorizationGrant",
    "CallRecord",
    "Clock",
    "Fault",
    "FaultKind",
    "ManualClock",
    "PlatformSimulator",
    "Pool",
    "PushDelivery",
    "QuotaExceededError",
    "RunningClock",
    "SimResponse",
    "SimulatorServer",
    "SystemClock",
    "WeChatSimulator",
    "fingerprint",
    "parse_fault_spec",
    "wechat_day",
]
