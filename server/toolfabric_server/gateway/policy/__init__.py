"""One policy for every door: authentication, tenants, ownership of ids, limits, admission and TLS.

```
door (gRPC, HTTP chat, step HTTP/gRPC, MCP HTTP, blob port)   translates its protocol, nothing else
  └── Policy (gate.py)
        ├── authentication.py   API key → Principal (tenant); grpc.py / http.py apply it to a whole door
        ├── ownership.py        ids namespaced by tenant; the one owner check of every read path
        ├── limits.py           per-tenant concurrency, tool calls per minute, cost, budgets
        ├── gateway/admission   the gateway's own bounded queue (its timing lives there)
        ├── secrets.py          settings a locked gateway refuses to start with
        └── listeners.py        every socket, TLS when configured, registered in doors.py
```
"""

from toolfabric_server.gateway.policy.authentication import ANONYMOUS, Authenticator, Principal
from toolfabric_server.gateway.policy.gate import Policy, make_policy
from toolfabric_server.gateway.policy.ownership import scoped, unscoped

__all__ = ["ANONYMOUS", "Authenticator", "Policy", "Principal", "make_policy", "scoped", "unscoped"]
