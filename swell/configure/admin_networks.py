"""The one rule for admin networks (where SSH may come from), shared by the stack and `swell configure`.

The stack's security groups (stacks/config.py, `swell:adminCidrs`) and the hosts' firewall (the
base role, fed by `swell configure --admin-cidr` or the stack outputs) must refuse the same
networks; otherwise the firewall could open SSH to the world where the stack refused to. Plain
Python with no dependency, so both sides import it cheaply.
"""

from __future__ import annotations

import ipaddress


def admin_network(value: str, strict: bool = True) -> str:
    """The network `value` names, normalised; ValueError (saying what is expected) when it is not a
    network or when it covers the whole internet (0.0.0.0/0, ::/0: any prefix of length 0).

    `strict` refuses host bits (203.0.113.7/24), as the stack does; `swell configure` passes False
    and uses the network they belong to, as it always has.
    """
    try:
        net = ipaddress.ip_network(str(value).strip(), strict=strict)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{value!r} is not a CIDR like 203.0.113.0/24 or 2001:db8::/48 ({e})") from None
    if net.prefixlen == 0:
        raise ValueError(f"{value!r} opens SSH to the whole internet; list the admins' networks")
    return str(net)
