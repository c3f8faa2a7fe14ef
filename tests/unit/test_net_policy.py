"""Pure tests of the outbound network policy: no sockets, no DNS."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from postroom.net.policy import Allowed, Denied, NetPolicy, check, check_all

DEFAULT = NetPolicy()
NO_LOOPBACK = NetPolicy.from_strings(deny="127.0.0.0/8")

# 169.254.169.254 is a9fe:a9fe, 127.0.0.1 is 7f00:0001.
METADATA_FORMS = [
    pytest.param("169.254.169.254", id="plain"),
    pytest.param("::ffff:169.254.169.254", id="ipv4-mapped-dotted"),
    pytest.param("::ffff:a9fe:a9fe", id="ipv4-mapped-hex"),
    pytest.param("::169.254.169.254", id="ipv4-compatible"),
    pytest.param("::ffff:0:a9fe:a9fe", id="ipv4-translated"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-well-known"),
    pytest.param("64:ff9b::169.254.169.254", id="nat64-well-known-dotted"),
    pytest.param("64:ff9b:1::a9fe:a9fe", id="nat64-local-96"),
    pytest.param("64:ff9b:1:0:a9:fea9:fe00:0", id="nat64-local-64"),
    pytest.param("64:ff9b:1:a9:fe:a9fe::", id="nat64-local-56"),
    pytest.param("64:ff9b:1:a9fe:a9:fe00::", id="nat64-local-48"),
    pytest.param("2002:a9fe:a9fe::1", id="6to4"),
    pytest.param("2001:0:4136:e378:8000:63bf:5601:5601", id="teredo-client"),
    pytest.param("2001:0:a9fe:a9fe::3f57:fefe", id="teredo-server"),
]

LOOPBACK_FORMS = [
    pytest.param("127.0.0.1", id="plain"),
    pytest.param("127.8.9.10", id="other-127"),
    pytest.param("::ffff:127.0.0.1", id="ipv4-mapped"),
    pytest.param("::127.0.0.1", id="ipv4-compatible"),
    pytest.param("::ffff:0:7f00:1", id="ipv4-translated"),
    pytest.param("64:ff9b::7f00:1", id="nat64-well-known"),
    pytest.param("64:ff9b:1::7f00:1", id="nat64-local-96"),
    pytest.param("2002:7f00:1::", id="6to4"),
    pytest.param("2001:0:4136:e378:8000:63bf:80ff:fffe", id="teredo-client"),
]


@pytest.mark.parametrize("address", METADATA_FORMS)
def test_metadata_address_is_denied_in_every_ipv4_and_ipv6_form(address: str) -> None:
    decision = check(DEFAULT, address, 80)
    assert isinstance(decision, Denied)
    assert "169.254.169.254" in decision.reason
    assert "metadata" in decision.reason
    assert "POSTROOM_NET_ALLOW" in decision.reason


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "AWS IPv6 cloud metadata"),
        ("100.100.100.200", "Alibaba Cloud metadata"),
        ("192.0.0.192", "Oracle Cloud Classic metadata"),
        ("168.63.129.16", "Azure platform"),
        ("169.254.0.1", "link-local"),
        ("169.254.255.255", "link-local"),
        ("fe80::1", "link-local"),
        ("febf:ffff::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("fec0::1", "site-local"),
    ],
)
def test_default_deny_list_names_what_the_address_is(address: str, words: str) -> None:
    decision = check(DEFAULT, address, 25)
    assert isinstance(decision, Denied)
    assert decision.address == address
    assert decision.reason.startswith(f"{address} is ")
    assert words in decision.reason
    assert "blocked by postroom's network policy" in decision.reason
    assert decision.reason.endswith("An operator can allow it with POSTROOM_NET_ALLOW.")


def test_metadata_reason_reads_as_a_sentence() -> None:
    assert check(DEFAULT, "169.254.169.254", 80) == Denied(
        "169.254.169.254",
        "169.254.169.254 is the cloud metadata service address (AWS, Google, Azure, ...); "
        "outbound connections to it are blocked by postroom's network policy. "
        "An operator can allow it with POSTROOM_NET_ALLOW.",
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "fd12:3456::1",
        "fd00:ec2::253",
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        "169.253.255.255",
        "169.255.0.0",
        "223.255.255.255",
    ],
)
def test_loopback_private_and_public_addresses_are_allowed_by_default(address: str) -> None:
    assert check(DEFAULT, address, 587) == Allowed(address)


@pytest.mark.parametrize("address", LOOPBACK_FORMS)
def test_loopback_in_any_form_is_allowed_by_default(address: str) -> None:
    assert isinstance(check(DEFAULT, address, 25), Allowed)


@pytest.mark.parametrize("address", LOOPBACK_FORMS)
def test_denying_loopback_denies_its_embedded_forms_too(address: str) -> None:
    decision = check(NO_LOOPBACK, address, 25)
    assert isinstance(decision, Denied)
    assert "127.0.0.0/8, which POSTROOM_NET_DENY denies" in decision.reason
    assert "remove 127.0.0.0/8 from POSTROOM_NET_DENY" in decision.reason


def test_embedded_reason_names_the_outer_and_inner_address() -> None:
    assert check(NO_LOOPBACK, "64:ff9b::7f00:1", 25) == Denied(
        "64:ff9b::7f00:1",
        "64:ff9b::7f00:1 embeds 127.0.0.1 (NAT64), and 127.0.0.1 is in 127.0.0.0/8, which "
        "POSTROOM_NET_DENY denies; outbound connections to it are blocked by postroom's "
        "network policy. An operator can allow 127.0.0.1 with POSTROOM_NET_ALLOW or remove "
        "127.0.0.0/8 from POSTROOM_NET_DENY.",
    )


def test_denying_ipv4_loopback_leaves_ipv6_loopback_alone() -> None:
    assert check(NO_LOOPBACK, "::1", 25) == Allowed("::1")


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1::5db8:d822",  # 93.184.216.34 under a /96 local-use prefix
        "64:ff9b:1:5db8:d8:2200::",  # ... under /48
        "64:ff9b:1:5d:b8:d822::",  # ... under /56
        "64:ff9b:1:0:5d:b8d8:2200:0",  # ... under /64
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
        "2001:0:4136:e378:8000:63bf:a247:27dd",  # Teredo client 93.184.216.34
    ],
)
def test_embedded_public_addresses_are_allowed(address: str) -> None:
    assert isinstance(check(DEFAULT, address, 25), Allowed)


def test_ipv4_mapped_form_of_a_private_address_is_allowed() -> None:
    assert check(DEFAULT, "::ffff:10.0.0.5", 25) == Allowed("::ffff:a00:5")


@pytest.mark.parametrize(
    ("allow", "address"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("169.254.169.254/32", "::ffff:169.254.169.254"),
        ("169.254.0.0/16", "64:ff9b::a9fe:a9fe"),
        ("169.254.0.0/16", "169.254.1.2"),
        ("fe80::/10", "fe80::1"),
        ("224.0.0.0/4", "239.1.2.3"),
        ("fd00:ec2::254", "fd00:ec2::254"),
    ],
)
def test_allow_carves_out_of_the_default_deny_list(allow: str, address: str) -> None:
    assert isinstance(check(NetPolicy.from_strings(allow=allow), address, 25), Allowed)


def test_allow_of_one_address_keeps_the_rest_of_the_range_denied() -> None:
    policy = NetPolicy.from_strings(allow="169.254.169.254")
    assert isinstance(check(policy, "169.254.1.1", 25), Denied)


def test_allow_must_cover_the_embedded_address_not_only_the_outer_one() -> None:
    policy = NetPolicy.from_strings(allow="64:ff9b::/96,2002::/16,::ffff:0:0/96")
    for address in ("64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "::ffff:169.254.169.254"):
        assert isinstance(check(policy, address, 25), Denied), address


def test_allow_of_the_inner_address_does_not_help_a_denied_outer_address() -> None:
    policy = NetPolicy.from_strings(deny="2002::/16", allow="10.0.0.0/8")
    decision = check(policy, "2002:a00:1::", 25)
    assert isinstance(decision, Denied)
    assert "2002::/16" in decision.reason


def test_operator_deny_of_the_outer_ipv6_range_denies_it() -> None:
    policy = NetPolicy.from_strings(deny="64:ff9b::/96")
    assert isinstance(check(policy, "64:ff9b::a00:1", 25), Denied)


def test_allow_wins_over_operator_deny() -> None:
    policy = NetPolicy.from_strings(deny="10.0.0.0/8", allow="10.1.0.0/16")
    assert check(policy, "10.1.2.3", 25) == Allowed("10.1.2.3")
    assert isinstance(check(policy, "10.2.0.1", 25), Denied)


def test_most_specific_rule_names_the_reason() -> None:
    policy = NetPolicy.from_strings(deny="169.254.169.0/24")
    decision = check(policy, "169.254.169.254", 25)
    assert isinstance(decision, Denied)
    assert "cloud metadata service address" in decision.reason
    decision = check(policy, "169.254.169.1", 25)
    assert isinstance(decision, Denied)
    assert "169.254.169.0/24, which POSTROOM_NET_DENY denies" in decision.reason


@pytest.mark.parametrize("port", [25, 465, 587, 993])
def test_listed_ports_are_allowed(port: int) -> None:
    policy = NetPolicy.from_strings(ports="25, 465,587 ,993")
    assert check(policy, "10.0.0.1", port) == Allowed("10.0.0.1")


@pytest.mark.parametrize("port", [1, 22, 80, 8080, 65535])
def test_unlisted_port_is_denied_naming_the_allowed_ports(port: int) -> None:
    policy = NetPolicy.from_strings(ports="993,25,587")
    assert check(policy, "10.0.0.1", port) == Denied(
        "10.0.0.1",
        f"Port {port} is not among the allowed ports (25, 587, 993); outbound connections to "
        f"10.0.0.1 on it are blocked by postroom's network policy. An operator can allow it "
        f"by adding it to POSTROOM_NET_PORTS.",
    )


@pytest.mark.parametrize("port", [1, 25, 2525, 65535])
def test_empty_port_list_allows_any_port(port: int) -> None:
    assert isinstance(check(DEFAULT, "10.0.0.1", port), Allowed)


def test_address_is_judged_before_the_port() -> None:
    decision = check(NetPolicy.from_strings(ports="25"), "169.254.169.254", 80)
    assert isinstance(decision, Denied)
    assert "metadata" in decision.reason


@pytest.mark.parametrize("port", [0, -1, 65536, True])
def test_port_outside_range_is_a_value_error(port: int) -> None:
    with pytest.raises(ValueError, match="port must be between 1 and 65535"):
        check(DEFAULT, "10.0.0.1", port)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("FE80::1%2", "fe80::1%2"),
    ],
)
def test_scoped_link_local_is_denied_and_keeps_its_zone(address: str, expected: str) -> None:
    decision = check(DEFAULT, address, 25)
    assert isinstance(decision, Denied)
    assert decision.address == expected
    assert decision.reason.startswith(f"{expected} is a link-local address")


def test_allowed_scoped_link_local_keeps_its_zone_for_connecting() -> None:
    policy = NetPolicy.from_strings(allow="fe80::/10")
    assert check(policy, "fe80::1%eth0", 25) == Allowed("fe80::1%eth0")


def test_zone_does_not_change_the_judgement_of_other_addresses() -> None:
    assert check(DEFAULT, "::1%lo", 25) == Allowed("::1%lo")
    assert isinstance(check(DEFAULT, "::ffff:169.254.169.254%eth0", 25), Denied)


@pytest.mark.parametrize(
    "address",
    [
        "fe80::1%",
        "fe80::1%eth0 ",
        "fe80::1%eth0\n",
        "fe80::1%a b",
        "fe80::1%a%b",
        "127.0.0.1%eth0",
    ],
)
def test_malformed_zone_id_is_a_value_error(address: str) -> None:
    with pytest.raises(ValueError):
        check(DEFAULT, address, 25)


@pytest.mark.parametrize(
    "address", ["", "localhost", "0x7f.1", "127.1", "2130706433", "0177.0.0.1", "10.0.0.0/8"]
)
def test_host_names_and_unresolved_numeric_forms_are_a_value_error(address: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address"):
        check(DEFAULT, address, 25)


def test_address_is_returned_in_canonical_form() -> None:
    assert check(DEFAULT, "2606:2800:0220:0001::0001", 25) == Allowed("2606:2800:220:1::1")


def test_check_all_keeps_the_order() -> None:
    decisions = check_all(DEFAULT, ["10.0.0.1", "169.254.169.254", "::1"], 25)
    assert [type(d) for d in decisions] == [Allowed, Denied, Allowed]
    assert [d.address for d in decisions] == ["10.0.0.1", "169.254.169.254", "::1"]


def test_check_all_of_nothing_is_nothing() -> None:
    assert check_all(DEFAULT, [], 25) == []


def test_from_strings_parses_comma_separated_values() -> None:
    policy = NetPolicy.from_strings(
        deny=" 10.0.0.0/8, 192.168.0.0/255.255.0.0,,fd00::/8 , 203.0.113.7",
        allow="10.1.0.0/16,",
        ports="25,587,25",
    )
    assert policy == NetPolicy(
        deny=(
            ip_network("10.0.0.0/8"),
            ip_network("192.168.0.0/16"),
            ip_network("fd00::/8"),
            ip_network("203.0.113.7/32"),
        ),
        allow=(ip_network("10.1.0.0/16"),),
        ports=frozenset({25, 587}),
    )


def test_from_strings_of_nothing_is_the_default_policy() -> None:
    assert NetPolicy.from_strings() == NetPolicy.from_strings(" ", " , ", "") == NetPolicy()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deny": "10.0.0.300/8"}, "POSTROOM_NET_DENY: '10.0.0.300/8' is not a valid CIDR"),
        ({"deny": "10.0.0.0/33"}, "POSTROOM_NET_DENY: '10.0.0.0/33' is not a valid CIDR"),
        ({"deny": "10.0.0.0/8 10.1.0.0/16"}, "POSTROOM_NET_DENY: '10.0.0.0/8 10.1.0.0/16' is"),
        ({"allow": "example.com"}, "POSTROOM_NET_ALLOW: 'example.com' is not a valid CIDR"),
        ({"allow": "10.0.0.0/8;10.1.0.0/16"}, "POSTROOM_NET_ALLOW: '10.0.0.0/8;10.1.0.0/16' is"),
        (
            {"deny": "10.0.0.1/8"},
            "POSTROOM_NET_DENY: '10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?",
        ),
        (
            {"allow": "fe80::%eth0/64"},
            "POSTROOM_NET_ALLOW: 'fe80::%eth0/64' has a zone id; CIDRs take none",
        ),
        ({"ports": "25,smtp"}, "POSTROOM_NET_PORTS: 'smtp' is not a port number (1-65535)"),
        ({"ports": "0"}, "POSTROOM_NET_PORTS: '0' is not a port number (1-65535)"),
        ({"ports": "65536"}, "POSTROOM_NET_PORTS: '65536' is not a port number (1-65535)"),
        ({"ports": "-25"}, "POSTROOM_NET_PORTS: '-25' is not a port number (1-65535)"),
        ({"ports": "+25"}, "POSTROOM_NET_PORTS: '+25' is not a port number (1-65535)"),
        ({"ports": "2_5"}, "POSTROOM_NET_PORTS: '2_5' is not a port number (1-65535)"),
        ({"ports": "\u0662\u0665"}, "POSTROOM_NET_PORTS: '\u0662\u0665' is not a port number"),
        ({"ports": "25 587"}, "POSTROOM_NET_PORTS: '25 587' is not a port number (1-65535)"),
    ],
)
def test_from_strings_names_the_bad_item(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        NetPolicy.from_strings(**kwargs)
    assert str(excinfo.value).startswith(message)


@pytest.mark.parametrize("port", [0, 65536, True])
def test_policy_rejects_out_of_range_ports(port: int) -> None:
    with pytest.raises(ValueError, match="NetPolicy.ports"):
        NetPolicy(ports=frozenset({port}))


def test_policy_rejects_strings_in_place_of_networks() -> None:
    with pytest.raises(TypeError, match="NetPolicy.deny"):
        NetPolicy(deny=("10.0.0.0/8",))  # type: ignore[arg-type]


def test_decisions_are_immutable_values() -> None:
    decision = check(DEFAULT, "10.0.0.1", 25)
    assert decision == Allowed("10.0.0.1")
    assert hash(decision) == hash(Allowed("10.0.0.1"))
    with pytest.raises(AttributeError):
        decision.address = "169.254.169.254"  # type: ignore[misc]
