"""The shop's load profile for its load test (``squals-load.yml``): visitors look at the page, one in five
checks out. Locust runs it against the island, ``--host`` being the island's URL."""

from __future__ import annotations

from locust import HttpUser, between, task


class Visitor(HttpUser):
    wait_time = between(0.05, 0.2)

    @task(4)
    def home(self) -> None:
        self.client.get("/")

    @task(1)
    def checkout(self) -> None:
        self.client.post("/checkout")
