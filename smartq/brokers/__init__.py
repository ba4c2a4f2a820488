"""The two implementations of :class:`smartq.broker.Broker`.

``memory`` has no dependency and runs the embedded mode; ``rabbitmq`` needs aio-pika and is
imported only when a ``broker_url`` is configured.
"""
