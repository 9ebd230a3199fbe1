"""Which URLs a webhook may target: never link-local or cloud-metadata addresses, and private or
loopback ones only when ``PRIORPROBE_WEBHOOK_ALLOW_PRIVATE`` is set.

Webhooks make the server send requests where a user says, so without this a key with write
scope could reach the instance-metadata service or internal hosts (SSRF). Every address the host
name resolves to must pass; the check runs when a webhook is created and again before every
attempt (a name may be re-pointed after creation). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

# Cloud metadata services: AWS/GCP/Azure/OpenStack (IPv4 and AWS's IPv6), Alibaba.
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")}


class TargetRefused(ValueError):
    pass


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "not a unicast address"
    if (address.is_private or address.is_loopback) and not allow_private:
        return "a private address (set PRIORPROBE_WEBHOOK_ALLOW_PRIVATE=true to allow private targets)"
    return None


def check_target(url: str, allow_private: bool) -> None:
    """Raise ``TargetRefused`` saying why ``url`` may not receive webhooks."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"'{url}' is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed; authenticate the receiver by the signature")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError) as exc:
        raise TargetRefused(f"cannot resolve '{parts.hostname}': {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        reason = _refusal(address, allow_private)
        if reason:
            raise TargetRefused(f"'{parts.hostname}' resolves to {address}, {reason}")
