# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redaction of audit events: what a secret looks like, and how it is hidden (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

REDACTED = "********"

# ---------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------
# Mapping keys whose values are secrets whatever they look like.
_SECRET_KEY_RE = re.compile(
    r"(pass(word|wd|phrase)?|pwd|(^|[^a-z])pw([^a-z]|$)|secret|token|private[_-]?key|api[_-]?key|apikey|"
    r"(access|signing|encryption|master|root|session|shared|tsig|hmac|recovery|unseal)[_-]?keys?|"
    r"credential|jwt|cookie|authorization|bearer|otp|unseal|wrap(ped|ping)?[_-]?(info|response)|^values?$|^val$)",
    re.IGNORECASE,
)
# Keys that match the pattern above but only ever hold public or descriptive values.
_PUBLIC_KEYS = frozenset(("token_type", "token_policies", "tokenless", "secret_path", "password_set", "secrettype",
                          "secret_type", "passwordreset", "password_reset"))
# Identifiers Vault writes in its own audit log (details.vault_request_id): kept when the value is exactly a UUID, so
# the collection's event and Vault's entry can be matched; anything else under the key is redacted like any string.
_VAULT_ID_KEYS = frozenset(("vault_request_id",))
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# In a name/value pair ({"name": "SMTP_PASSWORD", "value": ...}) the value is a secret when the name is.
_PAIR_NAME_KEYS = ("name", "key", "id", "field", "param", "parameter", "variable", "var", "env")
_PAIR_VALUE_KEYS = frozenset(("value", "val", "data", "content", "default"))
_PEM_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
    re.DOTALL,
)
_SECRET_WORDS = r"pass(?:word|wd|phrase)?|pwd|pw|secret|token|api[_-]?key|apikey|api|private[_-]?key|credential"
_VALUE_PATTERNS = (
    # PuTTY private keys
    (re.compile(r"PuTTY-User-Key-File-\d:.*?(?:Private-MAC: \S+|\Z)", re.DOTALL), REDACTED),
    # Vault / OpenBao tokens (service, batch, recovery; legacy s./b./r. tokens)
    (re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}|(?<![A-Za-z0-9.])[sbr]\.[A-Za-z0-9]{20,}\b"), REDACTED),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # well-known API token shapes (GitHub, GitLab, Slack, AWS access key ids)
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"),
     REDACTED),
    # HTTP authorization values
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 " + REDACTED),
    # user:password@ in URLs
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@", re.IGNORECASE), r"\1" + REDACTED + "@"),
    # password=..., pw: ..., API=..., "secret" = "..." inside free text: the value runs to the next blank
    # (or the closing quote), punctuation included
    (
        re.compile(
            r"((?<![A-Za-z0-9])[A-Za-z0-9_.-]*?(?:" + _SECRET_WORDS + r")[A-Za-z0-9_-]*[\"']?\s*[=:]\s*)"
            r"(?:\"[^\"]*\"|'[^']*'|(?!\*{8})\S+)",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # hex keys (API keys, HMAC keys, secret ids) of 128 bits and more; digests after sha256: etc. are kept
    (re.compile(r"(?<![A-Za-z0-9])(?<!sha256:)(?<!sha512:)(?<!sha1:)(?<!md5:)[0-9a-fA-F]{32,}(?![A-Za-z0-9])",
                re.IGNORECASE), REDACTED),
)

# Random-looking words are treated as generated passwords, keys or tokens (see _looks_random).
_WORD_RE = re.compile(r"(?<![A-Za-z0-9+/=_.~-])([A-Za-z0-9+/=_.~-]{12,})")
_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_PUBLIC_PREFIX_RE = re.compile(r"(?:SHA256:|MD5:|(?:ssh|ecdsa|sk)-[a-z0-9@.-]+ )$")
_SEPARATORS = "/._~=+-"
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}\Z")
_URLSAFE_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")
_VOWELS = frozenset("aeiouy")
# Short words and abbreviations identifiers are made of (lower case), and upper-case acronyms.
_SHORT_WORDS = frozenset("""
ssh smtp dkim dns vps tls ssl ttl tcp udp http https kv db id ip cmd cfg src dst msg pkg mx txt crl csr md js py sql
xml www ts pm ok hmac rsa ecdsa ed pkcs tmp rpm xz bz pwd ctx fn kw nfs gpg pgp jwt sftp ftp imap lmtp sshd hvac url uri
utc cwd rc nx cn to of by at in on is up if or no do go my we me he be as an am us so it ms km kb mb gb tb hz px api awx
aap ee vm os io fs gid uid pid tty sys usr var etc opt lib bin dev run srv mnt""".split())
_ACRONYMS = frozenset("""
API JSON URL URI HTTP HTTPS SSH SSL TLS DNS DKIM SMTP IMAP LMTP TCP UDP IP ID UUID UTC ISO RSA AES SHA MD KV OK IO OS
VM VPS AWS GCP CPU RAM DB SQL XML HTML CSV PDF MX TXT TTL NX SOA CNAME AAAA PTR SRV CA CRL CSR PEM DER EC ED PKCS TSIG
HMAC JWT OTP MFA SSO LDAP AD GUI CLI SDK EE AWX AAP SIG RR TTY PID UID GID ENV CFG TMP LOG ERR IPV ACL MAC PUT GET POST
HEAD""".split())
# Consonant pairs common inside English words; a run of letters with another pair is not a word.
_CONSONANT_PAIRS = frozenset("""
bb bl br bs by cc ch ck cl cr ct cy dd dg dl dn dr ds dy ff fl fr ft fy gg gh gl gn gr gs gy hl hm hn hr ht hy kn ks
ky lb lc ld lf lg lk ll lm ln lp ls lt lv ly mb mm mn mp ms my nc nd ng nk nn ns nt nv nx ny nz ph pl pp pr ps pt py
rb rc rd rf rg rk rl rm rn rp rr rs rt rv ry sc sh sk sl sm sn sp ss st sw sy th tl tm tn tr ts tt tw ty vy wh wl wn
wr ws xt yl ym yn yr ys zz cs gm lw rw bt dm gt mt nf nl nr pn sq tz wk wd wt xp xc""".split())
# Letter runs that may precede digits inside an identifier (ipv4, sha256, base64, ed25519, utf8, x509, ...).
_DIGIT_PREFIXES = frozenset("ipv sha md base utf x iso rfc v ed rsa pkcs aes des ec p h http tls ssl s t".split())


def _natural_token(token):
    """A digit run, a known acronym or short word, or a letter run that reads like a word."""
    if token.isdigit():
        return True
    if token.isupper() and len(token) >= 2:
        if token in _ACRONYMS:
            return True
        if len(token) < 5:
            return False
    low = token.lower()
    if low in _SHORT_WORDS:
        return True
    if len(low) < 3 or not any(c in _VOWELS for c in low):
        return False
    return all(a in _VOWELS or b in _VOWELS or a + b in _CONSONANT_PAIRS for a, b in zip(low, low[1:]))


def _looks_random(word):
    """True for a generated secret (password, key, token) of 12 or more letters and digits.

    Identifiers, host names, ISO dates and SSH public key blobs (``AAAA...``) are kept: they are
    made of word-like runs (``Provision_the_vps_t1``, ``oldVpsDestroyed``, ``getHTTPResponse``).
    A mixed-case word, or a 16+ character run of letters, digits, ``-`` and ``_``, or base64, with one
    run that reads like no word (``Xk3``, ``mPq``, ``Bzj``), or digits between letters, is random.
    Measured on 300,000 random samples each (docs/audit.md): none missed of 20 and 32 letters and
    digits, base64 keys of 16 bytes and hex keys of 128 bits; 1 of 16 letters and digits; 20 of
    URL-safe tokens of 12 bytes (16 characters).
    """
    alnum = [c for c in word if c.isalnum() and c.isascii()]
    if len(alnum) < 12 or word.startswith("AAAA"):
        return False
    lower = any(c.islower() for c in alnum)
    upper = any(c.isupper() for c in alnum)
    digit = any(c.isdigit() for c in alnum)
    base64 = len(word) >= 16 and _BASE64_RE.match(word) and ("+" in word or "/" in word or word.endswith("="))
    if not (lower and upper) and not (digit and len(word) >= 16 and _URLSAFE_RE.match(word)) and not base64:
        return False
    previous = None
    for match in _TOKEN_RE.finditer(word):
        token, start, end = match.group(0), match.start(), match.end()
        if (token.isdigit() and 0 < start and end < len(word) and word[start - 1].isalpha() and word[end].isalpha()
                and not (previous and previous.lower() in _DIGIT_PREFIXES)):
            return True
        previous = token
        if _natural_token(token):
            continue
        if len(token) == 1:
            before = word[start - 1] if start else "/"
            after = word[end] if end < len(word) else "/"
            if before in _SEPARATORS and (after in _SEPARATORS or after.isdigit()):
                continue
        return True
    return False


def _mask_random_words(text):
    def replace(match):
        word = match.group(1)
        if _PUBLIC_PREFIX_RE.search(text[max(0, match.start() - 40):match.start()]):
            return word
        return REDACTED if _looks_random(word) else word

    return _WORD_RE.sub(replace, text)


def is_secret_key(name):
    """True when a mapping key names a secret (password, pw, token, private_key, api_key, value, ...)."""
    if not isinstance(name, str):
        return False
    if name.lower() in _PUBLIC_KEYS:
        return False
    return bool(_SECRET_KEY_RE.search(name))


def redact_text(text, heuristics=True):
    """Mask private keys, tokens, passwords and keys inside a string.

    With ``heuristics``, random-looking words (generated passwords, unknown token formats) too.
    """
    if not isinstance(text, str) or not text:
        return text
    text = _PEM_RE.sub(REDACTED, text)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return _mask_random_words(text) if heuristics else text


def redact(value, no_log_values=()):
    """Return a redacted deep copy of ``value`` (dicts, lists, tuples, strings, scalars).

    * mapping keys are redacted like strings (a private key used as a key is masked);
    * values under secret-looking keys become ``********`` (booleans and ``None`` stay), and so
      does the value of a name/value pair whose name is secret-looking;
    * strings are scanned for private keys, tokens, ``user:password@``, ``password=...``, hex keys
      and random-looking words;
    * every occurrence of a string in ``no_log_values`` is masked as well.
    """
    hidden = sorted((v for v in no_log_values if isinstance(v, str) and len(v) >= 4), key=len, reverse=True)
    return _redact(value, hidden, 0)


def _redact_string(value, hidden):
    for secret in hidden:
        value = value.replace(secret, REDACTED)
    return redact_text(value)


def _pair_names_a_secret(mapping):
    for name in _PAIR_NAME_KEYS:
        for key in (name, name.upper(), name.capitalize()):
            if isinstance(mapping.get(key), str) and is_secret_key(mapping[key]):
                return True
    return False


def _redact(value, hidden, depth):
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        result = {}
        pair_secret = _pair_names_a_secret(value)
        for key, item in value.items():
            name = str(key)
            secret = is_secret_key(name) or (pair_secret and name.lower() in _PAIR_VALUE_KEYS)
            if secret and item is not None and not isinstance(item, bool) and item != "":
                shown = REDACTED
            elif name in _VAULT_ID_KEYS and isinstance(item, str) and _UUID_RE.match(item):
                shown = item
            else:
                shown = _redact(item, hidden, depth + 1)
            label = _redact_string(name, hidden)
            unique, number = label, 2
            while unique in result:
                unique, number = "%s#%d" % (label, number), number + 1
            result[unique] = shown
        return result
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, hidden, depth + 1) for item in value]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _redact_string(value, hidden)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _redact_string(str(value), hidden)
