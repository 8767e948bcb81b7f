"""Failover: steady load (--user-rate requests/s per user, default 10) while a fault is injected
from outside (python -m loadtests.run failover ... --fault-at / --restore-at). Every request is
recorded (--records-dir) so recovery is timed from per-request timestamps.

    locust -f loadtests/locustfile_failover.py --headless -u 20 -r 20 -t 60s \\
        --host http://127.0.0.1:PORT --subscription-key KEY --records-dir reports/records
"""

from locust import events
from locust_support import TodoUser


@events.init.add_listener
def steady_by_default(environment, **_):
    if not environment.parsed_options.user_rate:
        environment.parsed_options.user_rate = 10.0


class FailoverUser(TodoUser):
    pass
