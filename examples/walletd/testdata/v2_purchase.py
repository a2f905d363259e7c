#!/usr/bin/env python3
"""A purchase with a payment provider, through walletd's /api/v2, as a
shop written in Python would make it with requests.

Usage: v2_purchase.py BASE_URL AUTHORITY_CONFIG.json

The shop credits a customer's wallet, and for each purchase reserves the
price with a hold while the payment provider works: when the payment
succeeds it captures the hold, when it fails it releases it. Later it
refunds the captured purchase by reversing its entry. It checks the
balance through v2 at each step, and prints "v2 purchase flow ok" at the
end. Any failure raises, and the script exits non-zero.
"""

import json
import sys
import uuid

import jwt
import requests

PROBLEMS = "https://walletledger.dev/problems/"


class Shop:
    def __init__(self, base_url, config_path):
        with open(config_path) as f:
            cfg = json.load(f)
        token = jwt.encode({"sub": cfg["authority_id"]}, cfg["private_key"], algorithm="ES256")
        self.api = base_url.rstrip("/") + "/api/v2"
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + token

    def call(self, method, path, body=None, key=None, want=200):
        headers = {}
        if key is not None:
            headers["Idempotency-Key"] = key
        r = self.http.request(method, self.api + path, json=body, headers=headers, timeout=30)
        if r.status_code != want:
            raise AssertionError(f"{method} {path}: got {r.status_code}, want {want}: {r.text}")
        return r

    def balance(self, user):
        b = self.call("GET", f"/users/{user}/balances/@default").json()
        return b["total"], b["held"], b["available"]

    def expect_balance(self, user, total, held, available, step):
        got = self.balance(user)
        if got != (total, held, available):
            raise AssertionError(f"{step}: balance (total, held, available) is {got}, want {(total, held, available)}")
        print(f"{step}: total {total}, held {held}, available {available}")


def purchase(shop, user, price, order, pay):
    """Reserves price, asks the provider (pay), and settles the hold."""
    # The hold's key makes the reservation safe to retry: the retry
    # answers the same hold.
    key = f"hold-{order}"
    hold = shop.call("POST", "/holds", {"user_id": user, "amount": price, "reason": f"order {order}",
                                        "metadata": {"order": order}}, key=key, want=201).json()
    retry = shop.call("POST", "/holds", {"user_id": user, "amount": price, "reason": f"order {order}",
                                         "metadata": {"order": order}}, key=key, want=201).json()
    assert retry["hold_id"] == hold["hold_id"], (retry, hold)
    assert hold["state"] == "active" and hold["amount"] == price, hold
    paid = pay(hold)
    if paid:
        entry = shop.call("POST", f"/holds/{hold['hold_id']}/capture", {"reason": f"order {order} paid"},
                          key=f"capture-{order}", want=201).json()
        assert entry["amount"] == "-" + price and entry["hold_id"] == hold["hold_id"], entry
        assert entry["metadata"] == {"order": order}, entry
        return hold, entry
    released = shop.call("POST", f"/holds/{hold['hold_id']}/release", key=f"release-{order}").json()
    assert released["state"] == "released", released
    return hold, None


def main():
    shop = Shop(sys.argv[1], sys.argv[2])
    user = "customer-" + uuid.uuid4().hex[:8]

    shop.call("POST", "/entries", {"user_id": user, "amount": "100", "reason": "top-up"}, key=f"topup-{user}", want=201)
    shop.expect_balance(user, "100", "0", "100", "credited")

    # Purchase 1: the provider takes the payment; the hold is captured.
    seen = {}

    def provider_pays(hold):
        seen["held"] = shop.balance(user)
        return True

    _, entry = purchase(shop, user, "30", "o-1", provider_pays)
    assert seen["held"] == ("100", "30", "70"), seen
    print("purchase 1 held: total 100, held 30, available 70")
    shop.expect_balance(user, "70", "0", "70", "purchase 1 captured")

    # Purchase 2: the provider declines; the hold is released.
    def provider_declines(hold):
        seen["held2"] = shop.balance(user)
        return False

    hold2, none = purchase(shop, user, "50", "o-2", provider_declines)
    assert none is None
    assert seen["held2"] == ("70", "50", "20"), seen
    print("purchase 2 held: total 70, held 50, available 20")
    shop.expect_balance(user, "70", "0", "70", "purchase 2 released")
    # Releasing again is refused: the hold is closed.
    r = shop.call("POST", f"/holds/{hold2['hold_id']}/release", want=409)
    p = r.json()
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    assert p["type"] == PROBLEMS + "hold-closed" and p["state"] == "released", p

    # A purchase the wallet cannot cover is refused with the figures.
    r = shop.call("POST", "/holds", {"user_id": user, "amount": "71", "reason": "too dear"}, want=422)
    p = r.json()
    assert p["type"] == PROBLEMS + "not-enough-funds", p
    assert (p["balance"], p["held"], p["amount"]) == ("70", "0", "-71"), p

    # Refund purchase 1: reverse its entry.
    rev = shop.call("POST", f"/entries/{entry['entry_id']}/reversal", {"reason": "refund order o-1"},
                    key="refund-o-1", want=201).json()
    assert [e["amount"] for e in rev["entries"]] == ["30"], rev
    assert rev["entries"][0]["reverses"] == entry["entry_id"], rev
    shop.expect_balance(user, "100", "0", "100", "purchase 1 refunded")
    r = shop.call("POST", f"/entries/{entry['entry_id']}/reversal", {"reason": "again"}, want=409)
    assert r.json()["type"] == PROBLEMS + "already-reversed", r.text

    # The statement, newest first: refund, capture, top-up.
    st = shop.call("GET", f"/entries?user_ids={user}&order=newest_first").json()
    assert [e["amount"] for e in st["entries"]] == ["30", "-30", "100"], st
    assert [e["balance"] for e in st["entries"]] == ["100", "70", "100"], st
    assert st["next_cursor"] is None, st
    print("v2 purchase flow ok")


if __name__ == "__main__":
    main()
