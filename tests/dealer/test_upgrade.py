"""Upgraded connections through the Dealer: real WebSocket echo apps (aiohttp) behind a real Dealer."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import requests

from squals_action.dealer.bucketing import assign
from tests.support.dealer import DealerFactory


def test_open_websockets_stay_on_their_variant_through_a_promote_until_they_close(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory(pair, {"a": 50, "b": 50})
    ws_url = dealer.url.replace("http://", "ws://") + "/ws"
    units = [f"w{i}" for i in range(24)]
    before = {u: assign(u, {"a": 50, "b": 50}, "squals") for u in units}
    assert set(before.values()) == {"a", "b"}

    async def scenario() -> tuple[dict[str, list[str]], dict[str, str], int]:
        async with aiohttp.ClientSession() as session:
            sockets = {}
            for unit in units:
                sockets[unit] = await session.ws_connect(ws_url, headers={"Cookie": f"squals_unit={unit}"})
            heard: dict[str, list[str]] = {u: [] for u in units}

            async def talk(round_no: int) -> None:
                for unit, ws in sockets.items():
                    await ws.send_str(f"{unit}-{round_no}")
                    heard[unit].append(await asyncio.wait_for(ws.receive_str(), 10))

            await talk(0)
            await asyncio.to_thread(dealer.set_weights, {"a": 0, "b": 100})  # the promote
            await talk(1)
            await sockets[units[0]].send_bytes(b"\x00\xff" * 100_000)  # 200 kB each way, unchanged
            echoed = await asyncio.wait_for(sockets[units[0]].receive_bytes(), 10)
            for ws in sockets.values():
                await ws.close()
            after = {}
            for unit in units:  # a unit's new connection follows the routing in force
                async with session.ws_connect(ws_url, headers={"Cookie": f"squals_unit={unit}"}) as ws:
                    await ws.send_str("again")
                    after[unit] = (await asyncio.wait_for(ws.receive_str(), 10)).split(":")[0]
            return heard, after, len(echoed)

    heard, after, echoed = asyncio.run(scenario())
    for unit in units:
        variant = before[unit]
        assert heard[unit] == [f"{variant}:{unit}-0", f"{variant}:{unit}-1"]  # same upstream before and after
    assert after == dict.fromkeys(units, "b")
    assert echoed == 200_000
    tallies = dealer.tallies()
    # each upgrade is one request, whatever went through it; none is in flight once closed
    assert sum(t.activations for t in tallies.values()) == 2 * len(units)
    assert tallies["b"].activations == len(units) + sum(v == "b" for v in before.values())
    assert all(t.in_flight == 0 and t.errors == 0 for t in tallies.values())


def test_an_upgrade_the_upstream_declines_is_answered_as_a_plain_response(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1})
    host, port = dealer.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"a"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 200") and "X-Squals-Variant: a" in head
    assert requests.get(dealer.url + "/hello", timeout=10).text == "a"  # the Dealer still serves
    assert dealer.tallies()["a"].activations == 2
