# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dynamic DNS updates (RFC 2136) signed with TSIG, for any primary (BIND, Knot, PowerDNS).

The ``dns_record`` module, the ``dkim`` role and the migrate playbook all go through
:func:`ensure_record`:

* names and values are validated and put in canonical form before anything is sent;
* the current RRset is read from the primary itself (no recursion, signed with the key);
* :func:`plan_change` decides, without I/O, what the RRset must become;
* one UPDATE carries prerequisites that pin the RRset as it was read, so a concurrent
  change makes the server refuse the whole update instead of being overwritten;
* the RRset is read again afterwards and must be what was planned.

TXT records are never replaced as a whole: ``present`` adds the given values and ``absent``
removes only the given values, so SPF, DMARC or other DKIM values at the same name survive.
TXT values longer than 255 bytes are split into 255-byte character-strings
(:func:`split_txt`, deterministic) and compared after joining (:func:`join_txt`), so a record
split differently by another tool still counts as the same value.

Errors are :class:`DnsUpdateError` (or ``ValidationError`` for bad input) with a one-line
message that never contains the TSIG secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import ipaddress
import re
import socket

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.CNAME
    import dns.rdtypes.ANY.MX
    import dns.rdtypes.ANY.TXT
    import dns.rdtypes.IN.A
    import dns.rdtypes.IN.AAAA
    import dns.tsig
    import dns.update

    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = _exc

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    validate_domain,
)

SUPPORTED_TYPES = ("A", "AAAA", "MX", "TXT", "CNAME")
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")
DEFAULT_ALGORITHM = "hmac-sha256"
DEFAULT_TTL = 3600
MAX_TTL = 2147483647
TXT_CHUNK = 255
# One TXT rdata is at most 65535 bytes, each 255-byte string costs one length byte.
MAX_TXT_BYTES = 60000

_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")

_PREREQ_RCODES = ("NXRRSET", "YXRRSET", "NXDOMAIN", "YXDOMAIN")


class DnsUpdateError(Exception):
    """A failure talking to the DNS server; the message is one line and holds no secret."""


def _show(value, limit=80):
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


# ------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------
def validate_zone(zone):
    """Return the zone as ``example.test`` (lower case, no trailing dot)."""
    try:
        return validate_domain(zone)
    except ValidationError as exc:
        raise ValidationError("invalid zone: %s" % exc)


def _check_host_labels(name, what, allow_wildcard=False):
    labels = name.split(".")
    for index, label in enumerate(labels):
        if label == "*" and allow_wildcard and index == 0:
            continue
        if not _HOST_LABEL_RE.fullmatch(label):
            raise ValidationError(
                "invalid %s %s: label %s must be 1-63 letters, digits, '_' or '-', not starting or ending with '-'"
                % (what, _show(name), _show(label))
            )


def record_fqdn(record, zone):
    """Return the absolute name (``www.example.test.``) of ``record`` inside ``zone``.

    ``record`` is relative to the zone (``www``, ``dkim._domainkey``, ``@`` for the apex) unless
    it ends with a dot or already ends with the zone name (``www.example.test``).
    """
    zone = validate_zone(zone)
    if not isinstance(record, str):
        raise ValidationError("invalid record %s: must be a string" % _show(record))
    name = record.strip()
    if name in ("", "@"):
        return zone + "."
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        raise ValidationError("invalid record %s: use the IDNA (xn--) form" % _show(record))
    lowered = name.lower()
    if lowered.endswith("."):
        absolute = lowered[:-1]
        if absolute != zone and not absolute.endswith("." + zone):
            raise ValidationError("record %s is not inside zone %s" % (_show(record), _show(zone)))
    elif lowered == zone or lowered.endswith("." + zone):
        absolute = lowered
    else:
        absolute = lowered + "." + zone
    if len(absolute) > 253:
        raise ValidationError("invalid record %s: the name is longer than 253 characters" % _show(record))
    _check_host_labels(absolute, "record", allow_wildcard=True)
    return absolute + "."


def _target_name(value, what):
    """A host name used as MX exchange or CNAME target, returned absolute and lower case."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("invalid %s %s: must be a host name" % (what, _show(value)))
    name = value.strip().lower()
    if name == ".":
        return "."
    name = name[:-1] if name.endswith(".") else name
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        raise ValidationError("invalid %s %s: use the IDNA (xn--) form" % (what, _show(value)))
    if len(name) > 253:
        raise ValidationError("invalid %s %s: longer than 253 characters" % (what, _show(value)))
    _check_host_labels(name, what)
    return name + "."


# ------------------------------------------------------------------------------------------
# TXT character-strings
# ------------------------------------------------------------------------------------------
def split_txt(value):
    """Split a TXT value into character-strings of at most 255 bytes (UTF-8), always the same way.

    ``""`` gives one empty string, as a TXT record needs at least one.
    """
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not data:
        return [b""]
    return [data[index:index + TXT_CHUNK] for index in range(0, len(data), TXT_CHUNK)]


def join_txt(strings):
    """Join the character-strings of one TXT record into the value they carry."""
    data = b"".join(item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in strings)
    return data.decode("utf-8", errors="backslashreplace")


# ------------------------------------------------------------------------------------------
# Values: canonical text form <-> rdata
# ------------------------------------------------------------------------------------------
def validate_type(rtype):
    if not isinstance(rtype, str) or rtype.upper() not in SUPPORTED_TYPES:
        raise ValidationError("invalid type %s: must be one of %s" % (_show(rtype), ", ".join(SUPPORTED_TYPES)))
    return rtype.upper()


def canonical_value(rtype, value):
    """Validate one value of a record of ``rtype`` and return its canonical text form.

    A: ``192.0.2.1``; AAAA: compressed (``2001:db8::1``); MX: ``10 mail.example.test.``;
    CNAME: ``target.example.test.``; TXT: the text itself (joined, never quoted).
    """
    rtype = validate_type(rtype)
    if rtype == "TXT":
        if not isinstance(value, str):
            raise ValidationError("invalid TXT value %s: must be a string" % _show(value))
        if len(value.encode("utf-8")) > MAX_TXT_BYTES:
            raise ValidationError("invalid TXT value %s: longer than %d bytes" % (_show(value), MAX_TXT_BYTES))
        return value
    if not isinstance(value, str):
        value = str(value)
    text = value.strip()
    if rtype == "A":
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise ValidationError("invalid A value %s: must be an IPv4 address" % _show(value))
    if rtype == "AAAA":
        try:
            return ipaddress.IPv6Address(text).compressed
        except ValueError:
            raise ValidationError("invalid AAAA value %s: must be an IPv6 address" % _show(value))
    if rtype == "MX":
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) > 65535:
            raise ValidationError(
                "invalid MX value %s: must be 'PREFERENCE HOST', e.g. '10 mail.example.com.'" % _show(value)
            )
        return "%d %s" % (int(parts[0]), _target_name(parts[1], "MX exchange"))
    # CNAME
    target = _target_name(text, "CNAME target")
    if target == ".":
        raise ValidationError("invalid CNAME target %s" % _show(value))
    return target


def canonical_values(rtype, values):
    """Canonical forms of ``values``, duplicates dropped, order kept."""
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        values = [values]
    result = []
    for value in values:
        canonical = canonical_value(rtype, value)
        if canonical not in result:
            result.append(canonical)
    return result


def value_to_rdata(rtype, value):
    """The rdata for a canonical value (TXT split with :func:`split_txt`)."""
    rdclass = dns.rdataclass.IN
    if rtype == "TXT":
        return dns.rdtypes.ANY.TXT.TXT(rdclass, dns.rdatatype.TXT, split_txt(value))
    if rtype == "A":
        return dns.rdtypes.IN.A.A(rdclass, dns.rdatatype.A, value)
    if rtype == "AAAA":
        return dns.rdtypes.IN.AAAA.AAAA(rdclass, dns.rdatatype.AAAA, value)
    if rtype == "MX":
        preference, exchange = value.split()
        return dns.rdtypes.ANY.MX.MX(rdclass, dns.rdatatype.MX, int(preference), dns.name.from_text(exchange))
    return dns.rdtypes.ANY.CNAME.CNAME(rdclass, dns.rdatatype.CNAME, dns.name.from_text(value))


def rdata_to_value(rdata):
    """The canonical value of an rdata read from a server (TXT joined)."""
    rtype = dns.rdatatype.to_text(rdata.rdtype)
    if rtype == "TXT":
        return join_txt(rdata.strings)
    if rtype == "A":
        return str(ipaddress.IPv4Address(rdata.address))
    if rtype == "AAAA":
        return ipaddress.IPv6Address(rdata.address).compressed
    if rtype == "MX":
        return "%d %s" % (rdata.preference, rdata.exchange.to_text().lower())
    if rtype == "CNAME":
        return rdata.target.to_text().lower()
    raise DnsUpdateError("unsupported record type %s" % rtype)


def validate_ttl(ttl):
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise ValidationError("invalid ttl %s: must be an integer from 0 to %d" % (_show(ttl), MAX_TTL))
    return ttl


# ------------------------------------------------------------------------------------------
# The decision (no I/O)
# ------------------------------------------------------------------------------------------
def default_replace(rtype):
    """``replace`` when the caller leaves it unset: exact RRsets, except TXT (additive)."""
    return rtype != "TXT"


def check_request(rtype, state, values, replace):
    """Refuse combinations that make no sense, before anything is sent. Returns ``replace``."""
    if state not in ("present", "absent"):
        raise ValidationError("invalid state %s: must be present or absent" % _show(state))
    if replace is None:
        replace = default_replace(rtype)
    if rtype == "TXT" and replace:
        raise ValidationError(
            "replace=true is not supported for TXT: TXT values are only added or removed one by one, "
            "other TXT records at the name are never deleted"
        )
    if state == "present" and not values:
        raise ValidationError("state=present needs at least one value")
    if state == "absent" and rtype == "TXT" and not values:
        raise ValidationError(
            "state=absent for TXT needs the values to remove: other TXT records at the name are never deleted"
        )
    if rtype == "CNAME" and state == "present" and replace and len(values) != 1:
        raise ValidationError("a CNAME record takes exactly one value, got %d" % len(values))
    return replace


def plan_change(rtype, state, current_values, current_ttl, wanted, ttl=None, replace=None):
    """Decide what the RRset becomes. Pure: no I/O.

    ``current_values``/``wanted`` are canonical values; ``current_ttl`` is None when the RRset
    does not exist. Returns a dict with ``changed``, ``after`` (values, server order kept, new
    ones appended), ``after_ttl``, ``add``, ``remove`` and ``ttl_changed``.
    """
    replace = check_request(rtype, state, wanted, replace)
    current = list(current_values or [])
    if not current:
        current_ttl = None
    if state == "present":
        if replace:
            after = [value for value in current if value in wanted] + [value for value in wanted if value not in current]
        else:
            after = current + [value for value in wanted if value not in current]
        if ttl is not None:
            after_ttl = ttl
        elif current_ttl is not None:
            after_ttl = current_ttl
        else:
            after_ttl = DEFAULT_TTL
    else:
        after = [value for value in current if value not in wanted] if wanted else []
        after_ttl = current_ttl if after else None
    if rtype == "CNAME" and len(after) > 1:
        raise ValidationError("a CNAME record takes exactly one value, the RRset would hold %d" % len(after))
    add = [value for value in after if value not in current]
    remove = [value for value in current if value not in after]
    ttl_changed = bool(current and after and after_ttl != current_ttl)
    return {
        "changed": bool(add or remove or ttl_changed),
        "after": after,
        "after_ttl": after_ttl if after else None,
        "add": add,
        "remove": remove,
        "ttl_changed": ttl_changed,
    }


def rrset_text(fqdn, rtype, ttl, values):
    """Zone-file lines for a diff: one per value, sorted, TXT shown split as it is sent."""
    lines = []
    for value in sorted(values):
        if rtype == "TXT":
            shown = " ".join('"%s"' % _escape_txt(chunk) for chunk in split_txt(value))
        else:
            shown = value
        lines.append("%s %d IN %s %s\n" % (fqdn, ttl, rtype, shown))
    return "".join(lines)


def _escape_txt(chunk):
    out = []
    for byte in bytearray(chunk):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append("\\%03d" % byte)
    return "".join(out)


# ------------------------------------------------------------------------------------------
# Talking to the server
# ------------------------------------------------------------------------------------------
class CurrentRRset:
    """An RRset as read from the server: ``ttl`` (None if absent) and value -> [rdata, ...]."""

    def __init__(self, ttl=None, entries=None):
        self.ttl = ttl
        self.entries = entries or []  # list of (value, [rdata, ...]) in server order

    @property
    def values(self):
        return [value for value, _rdatas in self.entries]

    def rdatas(self, value=None):
        found = []
        for entry_value, rdatas in self.entries:
            if value is None or entry_value == value:
                found.extend(rdatas)
        return found


def _resolve_server(server):
    if not isinstance(server, str) or not server.strip():
        raise ValidationError("invalid server %s: must be an IP address or host name" % _show(server))
    server = server.strip()
    try:
        return str(ipaddress.ip_address(server))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(server, None, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DnsUpdateError("cannot resolve DNS server name %s: %s" % (_show(server), exc))
    return infos[0][4][0]


class DnsClient:
    """Queries and signed updates against one primary server."""

    def __init__(self, server, port=53, key_name=None, key_secret=None, key_algorithm=DEFAULT_ALGORITHM,
                 timeout=10, protocol="tcp"):
        if not HAS_DNSPYTHON:
            raise DnsUpdateError("the dnspython library is required: %s" % DNSPYTHON_IMPORT_ERROR)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValidationError("invalid port %s: must be 1-65535" % _show(port))
        if protocol not in ("tcp", "udp"):
            raise ValidationError("invalid protocol %s: must be tcp or udp" % _show(protocol))
        if not timeout or timeout <= 0:
            raise ValidationError("invalid timeout %s: must be a positive number of seconds" % _show(timeout))
        self.server_name = server
        self.server = _resolve_server(server)
        self.port = port
        self.timeout = timeout
        self.protocol = protocol
        self.key = None
        self.key_name = key_name
        if bool(key_name) != bool(key_secret):
            raise ValidationError("key_name and key_secret must be given together")
        if key_name:
            if key_algorithm not in TSIG_ALGORITHMS:
                raise ValidationError(
                    "invalid key_algorithm %s: must be one of %s" % (_show(key_algorithm), ", ".join(TSIG_ALGORITHMS))
                )
            try:
                secret = base64.b64decode(key_secret, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise ValidationError("invalid key_secret: it is not valid base64 (the secret is not shown)")
            if not secret:
                raise ValidationError("invalid key_secret: it is empty")
            try:
                self.key = dns.tsig.Key(key_name, secret, key_algorithm)
            except (dns.exception.DNSException, ValueError) as exc:
                raise ValidationError("invalid key_name %s: %s" % (_show(key_name), exc))

    @property
    def where(self):
        return "%s port %d over %s" % (self.server_name, self.port, self.protocol)

    # -- transport ---------------------------------------------------------------------
    def _exchange(self, message, action):
        """Send ``message``, return the response; every failure becomes one DnsUpdateError line."""
        try:
            if self.protocol == "udp":
                response, _tcp = dns.query.udp_with_fallback(message, self.server, timeout=self.timeout, port=self.port)
            else:
                response = dns.query.tcp(message, self.server, timeout=self.timeout, port=self.port)
        except dns.tsig.PeerBadKey:
            raise DnsUpdateError(
                "%s: TSIG error BADKEY (NOTAUTH): %s does not know key %s with algorithm %s"
                % (action, self.server_name, _show(self.key_name), self.key.algorithm.to_text().rstrip("."))
            )
        except dns.tsig.PeerBadSignature:
            raise DnsUpdateError(
                "%s: TSIG error BADSIG (NOTAUTH): %s rejected the signature of key %s: wrong key_secret or key_algorithm"
                % (action, self.server_name, _show(self.key_name))
            )
        except dns.tsig.PeerBadTime:
            raise DnsUpdateError(
                "%s: TSIG error BADTIME (NOTAUTH): the clocks of this host and %s differ too much"
                % (action, self.server_name)
            )
        except dns.tsig.PeerError as exc:
            raise DnsUpdateError("%s: TSIG error (NOTAUTH) from %s: %s" % (action, self.server_name, exc))
        except (dns.tsig.BadSignature, dns.message.UnknownTSIGKey, dns.message.BadTSIG) as exc:
            raise DnsUpdateError(
                "%s: the answer of %s failed TSIG verification (%s): is the key the one the server uses?"
                % (action, self.server_name, type(exc).__name__)
            )
        except dns.exception.Timeout:
            raise DnsUpdateError("%s: no answer from %s within %ss" % (action, self.where, self.timeout))
        except ConnectionRefusedError:
            raise DnsUpdateError("%s: cannot reach DNS server %s: connection refused" % (action, self.where))
        except OSError as exc:
            raise DnsUpdateError(
                "%s: cannot reach DNS server %s: %s" % (action, self.where, exc.strerror or type(exc).__name__)
            )
        except dns.exception.DNSException as exc:
            raise DnsUpdateError("%s: bad answer from %s: %s" % (action, self.where, exc))
        return response

    def _query(self, qname, rdtype, action):
        query = dns.message.make_query(qname, rdtype)
        query.flags &= ~dns.flags.RD
        if self.key is not None:
            query.use_tsig(self.key)
        response = self._exchange(query, action)
        rcode = dns.rcode.to_text(response.rcode())
        if rcode not in ("NOERROR", "NXDOMAIN"):
            raise DnsUpdateError(
                "%s: %s answered %s: does it serve this zone as a primary?" % (action, self.server_name, rcode)
            )
        if not response.flags & dns.flags.AA:
            raise DnsUpdateError(
                "%s: the answer of %s is not authoritative: it does not serve this zone" % (action, self.server_name)
            )
        return response

    # -- reads ---------------------------------------------------------------------------
    def check_zone(self, zone):
        """Fail unless the server is authoritative for ``zone`` (an SOA at its apex)."""
        zone = validate_zone(zone)
        action = "reading the SOA of zone %s" % zone
        response = self._query(zone + ".", dns.rdatatype.SOA, action)
        name = dns.name.from_text(zone + ".")
        soa = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.SOA)
        if soa is None:
            raise DnsUpdateError("%s: %s has no SOA for %s: it is not the apex of a zone it serves" % (action, self.server_name, zone))
        return soa[0].serial

    def read_rrset(self, fqdn, rtype):
        """The current RRset ``fqdn``/``rtype`` as a :class:`CurrentRRset`."""
        action = "reading %s %s" % (fqdn, rtype)
        name = dns.name.from_text(fqdn)
        rdtype = dns.rdatatype.from_text(rtype)
        response = self._query(name, rdtype, action)
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, rdtype)
        if rrset is None:
            return CurrentRRset()
        entries = []
        index = {}
        for rdata in rrset:
            value = rdata_to_value(rdata)
            if value in index:
                entries[index[value]][1].append(rdata)
            else:
                index[value] = len(entries)
                entries.append((value, [rdata]))
        return CurrentRRset(rrset.ttl, entries)

    # -- the update ----------------------------------------------------------------------
    def build_update(self, zone, fqdn, rtype, current, plan):
        """The UPDATE message that turns ``current`` into ``plan`` (see :func:`plan_change`)."""
        name = dns.name.from_text(fqdn)
        rdtype = dns.rdatatype.from_text(rtype)
        update = dns.update.UpdateMessage(zone + ".")
        # Prerequisites: the RRset is exactly what was read (RFC 2136 2.4.2), or does not exist.
        if current.entries:
            for rdata in current.rdatas():
                update.present(name, rdata)
        else:
            update.absent(name, rdtype)
        after_ttl = plan["after_ttl"]
        if plan["ttl_changed"]:
            # The TTL belongs to the whole RRset: rewrite it, keeping the rdatas as the server had them.
            update.delete(name, rdtype)
            for value in plan["after"]:
                rdatas = current.rdatas(value) or [value_to_rdata(rtype, value)]
                for rdata in rdatas:
                    update.add(name, after_ttl, rdata)
        else:
            for value in plan["remove"]:
                for rdata in current.rdatas(value):
                    update.delete(name, rdata)
            for value in plan["add"]:
                update.add(name, after_ttl, value_to_rdata(rtype, value))
        if self.key is not None:
            update.use_tsig(self.key)
        return update

    def send_update(self, zone, fqdn, rtype, current, plan):
        action = "updating %s %s in zone %s" % (fqdn, rtype, zone)
        response = self._exchange(self.build_update(zone, fqdn, rtype, current, plan), action)
        rcode = dns.rcode.to_text(response.rcode())
        if rcode == "NOERROR":
            return
        if rcode in _PREREQ_RCODES:
            raise DnsUpdateError(
                "%s: prerequisite failed (%s): the RRset changed on %s after it was read; nothing was changed, run again"
                % (action, rcode, self.server_name)
            )
        if rcode == "REFUSED":
            raise DnsUpdateError(
                "%s: %s refused the update (REFUSED): key %s may not update this name, or the server's checks "
                "rejected the data (BIND check-integrity: an MX target inside the zone needs an A or AAAA record)"
                % (action, self.server_name, _show(self.key_name))
            )
        if rcode == "NOTAUTH":
            raise DnsUpdateError(
                "%s: %s answered NOTAUTH: it is not the primary for zone %s or did not accept the key"
                % (action, self.server_name, zone)
            )
        raise DnsUpdateError("%s: %s answered %s" % (action, self.server_name, rcode))


# ------------------------------------------------------------------------------------------
# The one entry point
# ------------------------------------------------------------------------------------------
def ensure_record(client, zone, record, rtype, values=None, ttl=None, state="present", replace=None, check_mode=False):
    """Make the RRset ``record``/``rtype`` in ``zone`` hold ``values`` (see the module docs).

    ``client`` is a :class:`DnsClient`. Everything is validated before the first packet.
    Returns a dict: ``changed``, ``zone``, ``record`` (absolute), ``type``, ``before`` and
    ``after`` (each ``{"ttl", "values"}``), ``diff`` (``before``/``after`` zone-file text).
    """
    zone = validate_zone(zone)
    rtype = validate_type(rtype)
    fqdn = record_fqdn(record, zone)
    wanted = canonical_values(rtype, values)
    ttl = validate_ttl(ttl)
    replace = check_request(rtype, state, wanted, replace)
    if rtype == "CNAME" and fqdn == zone + ".":
        raise ValidationError("a CNAME cannot be at the zone apex %s" % zone)

    client.check_zone(zone)
    current = client.read_rrset(fqdn, rtype)
    plan = plan_change(rtype, state, current.values, current.ttl, wanted, ttl=ttl, replace=replace)

    before = {"ttl": current.ttl, "values": sorted(current.values)}
    after = {"ttl": plan["after_ttl"], "values": sorted(plan["after"])}
    result = {
        "changed": plan["changed"],
        "zone": zone,
        "record": fqdn,
        "type": rtype,
        "before": before,
        "after": after,
        "diff": {
            "before_header": "%s %s" % (fqdn, rtype),
            "after_header": "%s %s" % (fqdn, rtype),
            "before": rrset_text(fqdn, rtype, current.ttl or 0, current.values),
            "after": rrset_text(fqdn, rtype, plan["after_ttl"] or 0, plan["after"]),
        },
    }
    if not plan["changed"] or check_mode:
        return result

    client.send_update(zone, fqdn, rtype, current, plan)
    now = client.read_rrset(fqdn, rtype)
    if sorted(now.values) != after["values"] or (now.values and now.ttl != after["ttl"]):
        hint = " (a CNAME cannot share its name with other records)" if rtype == "CNAME" or now.values == current.values else ""
        raise DnsUpdateError(
            "%s accepted the update of %s %s but the RRset is now %d value(s), ttl %s, not the %d planned%s"
            % (client.server_name, fqdn, rtype, len(now.values), now.ttl, len(after["values"]), hint)
        )
    return result
