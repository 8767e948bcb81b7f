"""Throughput: a realistic TodoItem mix (list, create, read, update, delete) as fast as the users
can go (or --user-rate requests/s each).

    locust -f loadtests/locustfile_throughput.py --headless -u 20 -r 10 -t 30s \\
        --host http://127.0.0.1:PORT --subscription-key KEY
"""

from locust_support import TodoUser


class ThroughputUser(TodoUser):
    pass
