#!/usr/bin/python3
"""A Python client of walletd that behaves like the wallet service's SDK.

The wallet service's Python SDK (PyPI wallet-sdk-Noah-Huppert 1.1.0,
module wallet_sdk) cannot be installed where walletd is tested, so this
file is a stand-in written from the SDK's documentation: the same
WalletClient methods, the same requests on the wire (an ES256 JWT built
with PyJWT whose only claim is sub, sent raw in the Authorization header;
the item key always sent; every list parameter sent, comma-joined, empty
when unused; used sent as requests sends a Python bool), and the same
strict voluptuous schemas on every answer, which reject unknown keys.

Run it as

    /usr/bin/python3 sdk_client.py CONFIG.json [OTHER_CONFIG.json]

against a fresh walletd whose authority client configuration is CONFIG.json
(and, when given, a second authority's OTHER_CONFIG.json, which makes the
authority_ids filters tell two authorities apart). It walks the SDK
documentation's examples end to end, asserts what comes back, and prints
"sdk walkthrough ok" last. Debian's python3-jwt, python3-requests,
python3-voluptuous and python3-cryptography provide what it imports.
"""

import json
import sys
import time
import urllib.parse

import jwt
import requests
import voluptuous as vol
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# --- Schemas ----------------------------------------------------------------
#
# required=True makes every key that is not marked Optional required, at
# every level; voluptuous's default extra=PREVENT_EXTRA refuses any key the
# schema does not list, at every level.


def strict_int(v):
    """An int that is not a bool (bool is a subclass of int in Python)."""
    if type(v) is not int:
        raise vol.Invalid("expected int, got %s %r" % (type(v).__name__, v))
    return v


def strict_true(v):
    """Exactly True (1 == True in Python, so a literal True would let 1 in)."""
    if v is not True:
        raise vol.Invalid("expected true, got %r" % (v,))
    return v


def anything(v):
    return v


def schema(s):
    return vol.Schema(s, required=True, extra=vol.PREVENT_EXTRA)


CONFIG_SCHEMA = schema({
    "config_schema_version": "0.1.0",
    "api_base_url": vol.All(str, vol.Match(r"^https?://[^/]+")),
    "authority_id": vol.All(str, vol.Length(min=1)),
    "private_key": vol.All(str, vol.Match(r"^-----BEGIN EC PRIVATE KEY-----\n")),
})

HEALTH_SCHEMA = schema({
    "ok": strict_true,
    "version": vol.All(str, vol.Match(r"^1\.[0-9]+\.[0-9]+$")),
})

ITEM = {
    "name": str,
    "used": bool,
    vol.Optional("data"): anything,
}

ENTRY = {
    "entry_id": str,
    "authority_id": str,
    "user_id": str,
    # Python's json gives a float only for a number written with a
    # fraction (or an exponent): 1629578729.0 is a float, 1629578729 is not.
    "created_on": float,
    "amount": strict_int,
    "reason": str,
    vol.Optional("item"): ITEM,
}

ENTRY_SCHEMA = schema({"entry": ENTRY})

WALLETS_SCHEMA = schema({"wallets": [{"user_id": str, "total": strict_int}]})

INVENTORY_SCHEMA = schema({"inventory": [{
    "entry_id": str,
    "authority_id": str,
    "user_id": str,
    "item": ITEM,
}]})

# --- Client -----------------------------------------------------------------


class WalletAPIError(Exception):
    """A failed call: a non-2xx status, a body that is not JSON, or a body
    that does not match the SDK's schema."""

    def __init__(self, message, status_code=None, body=None):
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class NotEnoughFundsError(WalletAPIError):
    """The API answered 402: the user cannot afford the entry."""


class WalletClient:
    API_VERSION_PATH = "/api/v1"

    def __init__(self, api_base_url, authority_id, private_key_pem, timeout=30):
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("private_key must be an ECDSA P-256 key")
        self.api_base_url = api_base_url.rstrip("/")
        self.authority_id = authority_id
        self.timeout = timeout
        # One token for the client's life: ES256, only claim sub.
        self.token = jwt.encode({"sub": authority_id}, key, algorithm="ES256")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "wallet-sdk-py-standin 1.1.0"
        self.last_url = None  # the URL of the last request, for the walkthrough's checks

    @classmethod
    def LoadFromConfig(cls, path):
        with open(path) as f:
            config = json.load(f)
        config = CONFIG_SCHEMA(config)
        return cls(config["api_base_url"], config["authority_id"], config["private_key"])

    def _call(self, method, path, response_schema, params=None, body=None, auth=True):
        headers = {"Authorization": self.token} if auth else {}
        kwargs = {"params": params, "headers": headers, "timeout": self.timeout}
        if method == "POST" and body is not None:
            kwargs["json"] = body
        try:
            r = self.session.request(method, self.api_base_url + self.API_VERSION_PATH + path, **kwargs)
        except requests.RequestException as e:
            raise WalletAPIError("%s %s: %s" % (method, path, e)) from e
        self.last_url = r.url
        try:
            payload = r.json()
        except ValueError:
            payload = None
        if not 200 <= r.status_code < 300:
            detail = payload.get("error") if isinstance(payload, dict) else r.text
            cls = NotEnoughFundsError if r.status_code == 402 else WalletAPIError
            raise cls("%s %s: HTTP %d: %s" % (method, path, r.status_code, detail),
                      status_code=r.status_code, body=r.text)
        if payload is None:
            raise WalletAPIError("%s %s: HTTP %d: body is not JSON: %r" % (method, path, r.status_code, r.text),
                                 status_code=r.status_code, body=r.text)
        try:
            return response_schema(payload)
        except vol.Invalid as e:
            raise WalletAPIError("%s %s: answer does not match the SDK's schema: %s; body %s"
                                 % (method, path, e, r.text), status_code=r.status_code, body=r.text) from e

    def check_service_health(self):
        self._call("GET", "/health", HEALTH_SCHEMA, auth=False)
        return True

    def create_entry(self, user_id, amount, reason, item=None):
        body = {"user_id": user_id, "amount": amount, "reason": reason, "item": item}
        return self._call("POST", "/entry", ENTRY_SCHEMA, body=body)["entry"]

    def get_wallets(self, user_ids=[], authority_ids=[]):
        params = {"user_ids": ",".join(user_ids), "authority_ids": ",".join(authority_ids)}
        return self._call("GET", "/wallet", WALLETS_SCHEMA, params=params)["wallets"]

    def get_inventory(self, entry_ids=[], user_ids=[], authority_ids=[], used=False):
        params = {
            "entry_ids": ",".join(entry_ids),
            "user_ids": ",".join(user_ids),
            "authority_ids": ",".join(authority_ids),
            "used": used,  # requests writes True/False as "True"/"False" and leaves None out
        }
        return self._call("GET", "/entry/inventory", INVENTORY_SCHEMA, params=params)["inventory"]

    def use_item(self, entry_id):
        path = "/entry/%s/inventory/use" % urllib.parse.quote(entry_id, safe="")
        return self._call("POST", path, ENTRY_SCHEMA)["entry"]


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


def self_test_schemas():
    """The schemas must be as strict as the SDK's, or the walkthrough
    proves nothing about walletd's wire format."""
    good = {"entry": {"entry_id": "e", "authority_id": "a", "user_id": "u", "created_on": 1629578729.0,
                      "amount": 5, "reason": "r", "item": {"name": "n", "used": False, "data": [1]}}}
    ENTRY_SCHEMA(json.loads(json.dumps(good)))
    bad = [
        ("an extra key in the entry", lambda g: g["entry"].update(balance=5)),
        ("an extra key in the item", lambda g: g["entry"]["item"].update(extra=1)),
        ("an extra key at the top", lambda g: g.update(extra=1)),
        ("created_on without a fraction", lambda g: g["entry"].update(created_on=1629578729)),
        ("a fractional amount", lambda g: g["entry"].update(amount=5.0)),
        ("a bool amount", lambda g: g["entry"].update(amount=True)),
        ("no reason", lambda g: g["entry"].pop("reason")),
        ("no item.used", lambda g: g["entry"]["item"].pop("used")),
    ]
    for what, mutate in bad:
        g = json.loads(json.dumps(good))
        mutate(g)
        try:
            ENTRY_SCHEMA(g)
        except vol.Invalid:
            continue
        raise SystemExit("FAIL: the entry schema accepts %s" % what)
    for body in ({"ok": 1, "version": "1.1.0"}, {"ok": True, "version": "2.0.0"},
                 {"ok": True, "version": "1.1.0", "x": 1}, {"ok": True}):
        try:
            HEALTH_SCHEMA(body)
        except vol.Invalid:
            continue
        raise SystemExit("FAIL: the health schema accepts %r" % (body,))
    for body in ({"wallets": [{"user_id": "u", "total": 1, "x": 0}]}, {"wallets": [{"user_id": "u", "total": 1.0}]}):
        try:
            WALLETS_SCHEMA(body)
        except vol.Invalid:
            continue
        raise SystemExit("FAIL: the wallets schema accepts %r" % (body,))


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit("usage: %s CONFIG.json [OTHER_CONFIG.json]" % argv[0])
    self_test_schemas()

    c = WalletClient.LoadFromConfig(argv[1])
    other = WalletClient.LoadFromConfig(argv[2]) if len(argv) == 3 else None
    me = c.authority_id
    claims = jwt.decode(c.token, options={"verify_signature": False})
    check(claims == {"sub": me}, "token claims %r, want only sub" % (claims,))
    check(jwt.get_unverified_header(c.token)["alg"] == "ES256", "token alg")

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
    err = expect_raises(NotEnoughFundsError, c.create_entry, user_id="nobody", amount=-1, reason="x")
    check(err.status_code == 402, "status %r" % (err.status_code,))
    expect_raises(NotEnoughFundsError, c.create_entry, user_id="bobcats9", amount=-596, reason="too much",
                  item={"name": "Yacht"})
    if other is not None:
        other.create_entry(user_id="foobar123", amount=1, reason="bonus from another authority")

    step("get_wallets")
    all_wallets = c.get_wallets()
    check(c.last_url.endswith("/api/v1/wallet?user_ids=&authority_ids="), "get_wallets URL %s" % c.last_url)
    want = {"foobar123": 99 + (1 if other else 0), "bobcats9": 595, "1": 850}
    check(by_user(all_wallets) == want, "get_wallets() = %r, want %r" % (all_wallets, want))
    got = by_user(c.get_wallets(user_ids=["foobar123", "1"]))
    check(got == {"foobar123": want["foobar123"], "1": 850}, "get_wallets(user_ids) = %r" % (got,))
    check("user_ids=foobar123%2C1&authority_ids=" in c.last_url, "get_wallets(user_ids) URL %s" % c.last_url)
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
    check("entry_ids=&user_ids=&authority_ids=&used=False" in c.last_url, "get_inventory URL %s" % c.last_url)
    check(ids(unused) == ids(items), "get_inventory() = %r" % (unused,))
    for inv in unused:
        src = next(e for e in items if e["entry_id"] == inv["entry_id"])
        want_inv = {k: src[k] for k in ("entry_id", "authority_id", "user_id", "item")}
        check(inv == want_inv, "inventory item %r, want %r" % (inv, want_inv))
    check(c.get_inventory(used=True) == [], "nothing is used yet")
    check(c.last_url.endswith("&used=True"), "used=True URL %s" % c.last_url)
    check(ids(c.get_inventory(used=None)) == ids(items), "get_inventory(used=None)")
    check("used=" not in c.last_url, "used=None leaves used out: %s" % c.last_url)
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
    check(not isinstance(err, NotEnoughFundsError) and err.status_code == 409 and "409" in str(err),
          "a second use_item: %r" % (err,))
    err = expect_raises(WalletAPIError, c.use_item, entry_id=payday["entry_id"])
    check(err.status_code == 409, "use_item of an entry without item: %s" % err)
    err = expect_raises(WalletAPIError, c.use_item, entry_id="no-such-entry")
    check(err.status_code == 404, "use_item of an unknown entry: %s" % err)

    step("authentication")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    forger = WalletClient(c.api_base_url, me, pem)
    err = expect_raises(WalletAPIError, forger.get_wallets)
    check(err.status_code == 403, "a token signed by another key: %s" % err)
    check(by_user(c.get_wallets()) == want, "wallets unchanged at the end")

    print("sdk walkthrough ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
