#!/usr/bin/python3
"""The SDK page's walk-through, run with the original Python SDK against walletd.

wallet_sdk is the original service's SDK (wallet-sdk-Noah-Huppert 1.1.0),
unchanged: python_test.go puts its folder (shared/seed/original/py-sdk,
beside the repository) on PYTHONPATH. This script only calls the SDK's
public API (WalletClient.LoadFromConfig, check_service_health,
create_entry, get_wallets, get_inventory, use_item, NotEnoughFundsError,
WalletAPIError). To check the query strings the SDK sends, it records the
URL of every request the SDK makes, passing each call through to
requests.request untouched.

Run it as

    PYTHONPATH=.../py-sdk /usr/bin/python3 sdk_walkthrough.py CONFIG.json [OTHER_CONFIG.json]

against a fresh walletd whose authority client configuration is CONFIG.json
(and, when given, a second authority's OTHER_CONFIG.json, which makes the
authority_ids filters tell two authorities apart). It asserts what comes
back and prints "sdk walkthrough ok" last. The SDK imports jwt, requests
and voluptuous: Debian's python3-jwt, python3-requests, python3-voluptuous
and python3-cryptography.
"""

import os
import sys
import time

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import wallet_sdk
from wallet_sdk import NotEnoughFundsError, WalletAPIError, WalletClient

# urls holds the URL of every request the SDK sent, in order.
urls = []
_request = requests.request


def _recording_request(*args, **kwargs):
    r = _request(*args, **kwargs)
    urls.append(r.url)
    return r


requests.request = _recording_request


def last_url():
    return urls[-1]


# --- Walkthrough --------------------------------------------------------------


def check(cond, msg):
    if not cond:
        raise SystemExit("FAIL: " + msg)


def step(msg):
    print("--", msg, flush=True)


def expect_raises(exc_type, fn, *args, **kwargs):
    try:
        got = fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise SystemExit("FAIL: %s(%s) returned %r, want %s" % (fn.__name__, args or kwargs, got, exc_type.__name__))


def by_user(wallets):
    out = {}
    for w in wallets:
        check(w["user_id"] not in out, "user %r twice in %r" % (w["user_id"], wallets))
        out[w["user_id"]] = w["total"]
    return out


def ids(inventory):
    return sorted(i["entry_id"] for i in inventory)


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit("usage: %s CONFIG.json [OTHER_CONFIG.json]" % argv[0])

    # The test checks that this is the original SDK, not some other wallet_sdk.
    print("wallet_sdk:", os.path.realpath(wallet_sdk.__file__), flush=True)
    c = WalletClient.LoadFromConfig(argv[1])
    other = WalletClient.LoadFromConfig(argv[2]) if len(argv) == 3 else None
    me = c.authority_id
    claims = jwt.decode(c.auth_token, options={"verify_signature": False})
    check(claims == {"sub": me}, "token claims %r, want only sub" % (claims,))
    check(jwt.get_unverified_header(c.auth_token)["alg"] == "ES256", "token alg")

    step("check_service_health")
    check(c.check_service_health() is True, "check_service_health")

    step("create_entry: credits")
    t0 = time.time()
    e = c.create_entry(user_id="foobar123", amount=99, reason="returned a lot of cans")
    check(e["user_id"] == "foobar123" and e["amount"] == 99 and e["reason"] == "returned a lot of cans",
          "credit entry %r" % (e,))
    check(e["authority_id"] == me, "authority_id %r, want %r" % (e["authority_id"], me))
    check("item" not in e, "an entry without item has no item key: %r" % (e,))
    check(abs(e["created_on"] - t0) < 300, "created_on %r is not now (%r)" % (e["created_on"], t0))
    payday = c.create_entry(user_id="bobcats9", amount=600, reason="payday")
    c.create_entry(user_id="1", amount=1000, reason="payday")

    step("create_entry: spends with items")
    data = {"internal_id": "001122", "tags": ["fizzy", "cold"], "nested": [1, [2, 3.5], {"k": None}],
            "text": "<caf\u00e9 & \u2603>"}
    soda = c.create_entry(user_id="bobcats9", amount=-5, reason="bought a soda",
                          item={"name": "Soda Can", "data": data})
    check(soda["amount"] == -5, "soda amount %r" % (soda["amount"],))
    check(soda["item"] == {"name": "Soda Can", "used": False, "data": data}, "soda item %r" % (soda["item"],))
    check(isinstance(soda["item"]["data"]["tags"], list), "a list in item data stays a list")
    check(isinstance(soda["item"]["data"]["nested"][1], list), "a nested list in item data stays a list")
    # The SDK page's own example sends data as a string holding JSON.
    shades = c.create_entry(user_id="1", amount=-100, reason="bought sunglasses",
                            item={"name": "Cool Shades", "data": '{ "internal_id": "001122" }'})
    check(shades["item"] == {"name": "Cool Shades", "used": False, "data": '{ "internal_id": "001122" }'},
          "shades item %r" % (shades["item"],))
    sticker = c.create_entry(user_id="1", amount=-50, reason="bought a sticker", item={"name": "Sticker"})
    check(sticker["item"] == {"name": "Sticker", "used": False}, "an item without data has no data key: %r"
          % (sticker["item"],))

    step("create_entry: NotEnoughFundsError")
    expect_raises(NotEnoughFundsError, c.create_entry, user_id="nobody", amount=-1, reason="x")
    expect_raises(NotEnoughFundsError, c.create_entry, user_id="bobcats9", amount=-596, reason="too much",
                  item={"name": "Yacht"})
    if other is not None:
        other.create_entry(user_id="foobar123", amount=1, reason="bonus from another authority")

    step("get_wallets")
    all_wallets = c.get_wallets()
    check(last_url().endswith("/api/v1/wallet?user_ids=&authority_ids="), "get_wallets URL %s" % last_url())
    want = {"foobar123": 99 + (1 if other else 0), "bobcats9": 595, "1": 850}
    check(by_user(all_wallets) == want, "get_wallets() = %r, want %r" % (all_wallets, want))
    got = by_user(c.get_wallets(user_ids=["foobar123", "1"]))
    check(got == {"foobar123": want["foobar123"], "1": 850}, "get_wallets(user_ids) = %r" % (got,))
    check("user_ids=foobar123%2C1&authority_ids=" in last_url(), "get_wallets(user_ids) URL %s" % last_url())
    got = by_user(c.get_wallets(authority_ids=[me]))
    check(got == {"foobar123": 99, "bobcats9": 595, "1": 850}, "get_wallets(authority_ids=[me]) = %r" % (got,))
    got = by_user(c.get_wallets(user_ids=["bobcats9"], authority_ids=[me]))
    check(got == {"bobcats9": 595}, "get_wallets(user_ids, authority_ids) = %r" % (got,))
    if other is not None:
        got = by_user(c.get_wallets(authority_ids=[other.authority_id]))
        check(got == {"foobar123": 1}, "get_wallets(authority_ids=[other]) = %r" % (got,))
        got = by_user(c.get_wallets(authority_ids=[me, other.authority_id]))
        check(got == want, "get_wallets(authority_ids=[me, other]) = %r" % (got,))
    got = c.get_wallets(user_ids=["nobody"])
    check(got == [{"user_id": "nobody", "total": 0}], "a named user with no entries has total 0: %r" % (got,))

    step("get_inventory")
    items = [soda, shades, sticker]
    unused = c.get_inventory()
    check("entry_ids=&user_ids=&authority_ids=&used=false" in last_url(), "get_inventory URL %s" % last_url())
    check(ids(unused) == ids(items), "get_inventory() = %r" % (unused,))
    for inv in unused:
        src = next(e for e in items if e["entry_id"] == inv["entry_id"])
        want_inv = {k: src[k] for k in ("entry_id", "authority_id", "user_id", "item")}
        check(inv == want_inv, "inventory item %r, want %r" % (inv, want_inv))
    check(c.get_inventory(used=True) == [], "nothing is used yet")
    check(last_url().endswith("&used=true"), "used=True URL %s" % last_url())
    check(ids(c.get_inventory(used=None)) == ids(items), "get_inventory(used=None)")
    check("used=" not in last_url(), "used=None leaves used out: %s" % last_url())
    check(ids(c.get_inventory(entry_ids=[soda["entry_id"]])) == [soda["entry_id"]], "entry_ids filter")
    check(ids(c.get_inventory(user_ids=["1"])) == ids([shades, sticker]), "user_ids filter")
    check(ids(c.get_inventory(authority_ids=[me])) == ids(items), "authority_ids filter, mine")
    check(c.get_inventory(authority_ids=["0" * 32]) == [], "authority_ids filter, unknown authority")

    step("use_item")
    used = c.use_item(entry_id=soda["entry_id"])
    check(used["entry_id"] == soda["entry_id"] and used["amount"] == -5, "use_item entry %r" % (used,))
    check(used["created_on"] == soda["created_on"], "use_item keeps created_on")
    check(used["item"] == {"name": "Soda Can", "used": True, "data": data}, "used item %r" % (used["item"],))
    check(ids(c.get_inventory()) == ids([shades, sticker]), "the used soda is no longer unused")
    used_inv = c.get_inventory(used=True)
    check(ids(used_inv) == [soda["entry_id"]], "get_inventory(used=True) = %r" % (used_inv,))
    check(used_inv[0]["item"] == {"name": "Soda Can", "used": True, "data": data}, "used inventory item")
    check(ids(c.get_inventory(used=None)) == ids(items), "get_inventory(used=None) after use")
    err = expect_raises(WalletAPIError, c.use_item, entry_id=soda["entry_id"])
    check(err.status_code == 409 and "item already used" in err.error,
          "a second use_item: %r" % (err,))
    err = expect_raises(WalletAPIError, c.use_item, entry_id=payday["entry_id"])
    check(err.status_code == 409, "use_item of an entry without item: %s" % err)
    err = expect_raises(WalletAPIError, c.use_item, entry_id="no-such-entry")
    check(err.status_code == 404, "use_item of an unknown entry: %s" % err)

    step("authentication")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    forger = WalletClient(c.api_url, me, pem)
    err = expect_raises(WalletAPIError, forger.get_wallets)
    check(err.status_code == 403, "a token signed by another key: %s" % err)
    check(by_user(c.get_wallets()) == want, "wallets unchanged at the end")

    print("sdk walkthrough ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
