"""A faithful local simulator of WeChat's (and WeCom's) token APIs.

In-process::

    sim = WeChatSimulator(ManualClock())
    sim.add_app("wx123", "s3cret")
    client = httpx.Client(transport=sim.transport(), base_url="https://api.weixin.qq.com")

Over HTTP on loopback: ``with SimulatorServer(sim) as server: server.base_url``,
or ``python -m simulator --port 0 --app wx123:s3cret``.
"""

from simulator.calllog import CallRecord
from simulator.clock import Clock, ManualClock, SystemClock
from simulator.faults import FAULT_KINDS, Fault, FaultKind, parse_fault_spec
from simulator.server import SimulatorServer
from simulator.wechat import (
    BUSINESS_ENDPOINTS,
    CLASSIC_TOKEN,
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
    "BUSINESS_ENDPOINTS",
    "CLASSIC_TOKEN",
    "FAULT_KINDS",
    "MP_TICKET",
    "STABLE_TOKEN",
    "TICKET_ENDPOINTS",
    "TOKEN_ENDPOINTS",
    "WECOM_AGENT_TICKET",
    "WECOM_CORP_TICKET",
    "WECOM_TOKEN",
    "CallRecord",
    "Clock",
    "Fault",
    "FaultKind",
    "ManualClock",
    "Pool",
    "QuotaExceededError",
    "SimResponse",
    "SimulatorServer",
    "SystemClock",
    "WeChatSimulator",
    "fingerprint",
    "parse_fault_spec",
    "wechat_day",
]
