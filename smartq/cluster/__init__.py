"""A multi-host smartq on one machine: network namespaces joined to the root namespace by veth
pairs, the machine's PostgreSQL and RabbitMQ reached through a userspace fault proxy, and the
fault scenarios run against it (``scripts/cluster``; see docs/deploy.md)."""
