#!/usr/bin/env python3
"""Writes the metallb.io CustomResourceDefinitions in this folder (one file per kind).

The schemas follow MetalLB's types (field names, types, bounds) so that existing MetalLB objects apply
unchanged. Run it after editing; k8s-bridge/tests/manifests.rs validates the output and MetalLB-style
examples against it.
"""
import yaml, os

def s(t, **kw):
    d = {"type": t}
    d.update(kw)
    return d

STR = s("string")
STRS = s("array", items=STR)
SELECTOR = s("object", properties={
    "matchLabels": s("object", additionalProperties=STR),
    "matchExpressions": s("array", items=s("object", required=["key", "operator"], properties={
        "key": STR, "operator": STR, "values": STRS})),
}, **{"x-kubernetes-map-type": "atomic"})
SELECTORS = s("array", items=SELECTOR)
DURATION = s("string", pattern=r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def rules(schema, *pairs):
    """The schema with CEL rules (kube-apiserver evaluates them on create and update; a rule naming
    oldSelf is a transition rule, evaluated on updates only). MetalLB's CRDs carry the same rules."""
    return dict(schema, **{"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]})


IMMUTABLE = ("self == oldSelf", "is immutable")

KINDS = {
    "IPAddressPool": ("ipaddresspools", ["v1beta1"], "IPAddressPool is a pool of IPs that Services of type LoadBalancer get, and that speakers announce.", {
        "addresses": s("array", items=STR, description="CIDRs (192.0.2.0/24) or ranges (192.0.2.10-192.0.2.20)."),
        "autoAssign": s("boolean", default=True),
        "avoidBuggyIPs": s("boolean", default=False),
        "serviceAllocation": s("object", properties={
            "priority": s("integer"),
            "namespaces": STRS,
            "namespaceSelectors": SELECTORS,
            "serviceSelectors": SELECTORS,
        }),
    }, ["addresses"], [("Auto Assign", ".spec.autoAssign", "boolean"), ("Avoid Buggy IPs", ".spec.avoidBuggyIPs", "boolean"), ("Addresses", ".spec.addresses", "string")]),
    "BGPPeer": ("bgppeers", ["v1beta1", "v1beta2"], "BGPPeer is a BGP session from the speakers of the selected nodes.", {
        "myASN": s("integer", format="int64", minimum=0, maximum=4294967295),
        "peerASN": s("integer", format="int64", minimum=0, maximum=4294967295),
        "localASN": s("integer", format="int64", minimum=1, maximum=4294967295),
        "dynamicASN": s("string", enum=["internal", "external"]),
        "peerAddress": STR,
        "sourceAddress": STR,
        "peerPort": s("integer", minimum=0, maximum=65535, default=179),
        "holdTime": DURATION,
        "keepaliveTime": DURATION,
        "connectTime": rules(DURATION,
            ("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535", "connectTime must be 1s to 65535s"),
            ("duration(self).getMilliseconds() % 1000 == 0", "connectTime must be a whole number of seconds")),
        "routerID": STR,
        "nodeSelectors": SELECTORS,
        "password": STR,
        "passwordSecret": s("object", properties={"name": STR, "namespace": STR}, **{"x-kubernetes-map-type": "atomic"}),
        "bfdProfile": STR,
        "enableGracefulRestart": rules(s("boolean"),
            ("self == oldSelf", "enableGracefulRestart cannot change once the BGPPeer exists: the session would have to restart")),
        "ebgpMultiHop": s("boolean"),
        "vrf": STR,
        "disableMP": s("boolean", default=False),
        "interface": STR,
        "dualStackAddressFamily": s("boolean", default=False),
    }, ["myASN"], [("Address", ".spec.peerAddress", "string"), ("ASN", ".spec.peerASN", "string"), ("BFD Profile", ".spec.bfdProfile", "string"), ("Multi Hops", ".spec.ebgpMultiHop", "string")]),
    "BGPAdvertisement": ("bgpadvertisements", ["v1beta1"], "BGPAdvertisement says how the IPs of pools are announced over BGP.", {
        "aggregationLength": s("integer", format="int32", minimum=0, maximum=32, default=32),
        "aggregationLengthV6": s("integer", format="int32", minimum=0, maximum=128, default=128),
        "localPref": s("integer", format="int32", minimum=0, maximum=4294967295),
        "communities": STRS,
        "ipAddressPools": STRS,
        "ipAddressPoolSelectors": SELECTORS,
        "nodeSelectors": SELECTORS,
        "peers": STRS,
        "serviceSelectors": SELECTORS,
    }, [], [("IPAddressPools", ".spec.ipAddressPools", "string"), ("IPAddressPool Selectors", ".spec.ipAddressPoolSelectors", "string"), ("Peers", ".spec.peers", "string")]),
    "L2Advertisement": ("l2advertisements", ["v1beta1"], "L2Advertisement says which pools' IPs are answered for with ARP/NDP, from which nodes and interfaces.", {
        "ipAddressPools": STRS,
        "ipAddressPoolSelectors": SELECTORS,
        "nodeSelectors": SELECTORS,
        "interfaces": STRS,
        "serviceSelectors": SELECTORS,
        "preferredNodeSelectors": s("array", items=s("object", required=["weight", "preference"], properties={
            "weight": s("integer", format="int32", minimum=1, maximum=100),
            "preference": SELECTOR})),
    }, [], [("IPAddressPools", ".spec.ipAddressPools", "string"), ("Interfaces", ".spec.interfaces", "string")]),
    "Community": ("communities", ["v1beta1"], "Community defines aliases of BGP communities.", {
        "communities": s("array", items=s("object", properties={"name": STR, "value": STR})),
    }, [], []),
    "BFDProfile": ("bfdprofiles", ["v1beta1"], "BFDProfile is a set of BFD session parameters that BGPPeers refer to.", {
        "receiveInterval": s("integer", format="int32", minimum=10, maximum=60000),
        "transmitInterval": s("integer", format="int32", minimum=10, maximum=60000),
        "detectMultiplier": s("integer", format="int32", minimum=2, maximum=255),
        "echoInterval": s("integer", format="int32", minimum=10, maximum=60000),
        "echoMode": s("boolean"),
        "passiveMode": s("boolean"),
        "minimumTtl": s("integer", format="int32", minimum=1, maximum=254),
    }, [], [("Passive Mode", ".spec.passiveMode", "boolean"), ("Transmit Interval", ".spec.transmitInterval", "integer"), ("Receive Interval", ".spec.receiveInterval", "integer"), ("Multiplier", ".spec.detectMultiplier", "integer")]),
}

STATUS_KINDS = {
    "ServiceL2Status": ("servicel2statuses", "ServiceL2Status says which node answers ARP/NDP for a Service, on which interfaces.", {
        "node": rules(STR, IMMUTABLE), "serviceName": rules(STR, IMMUTABLE), "serviceNamespace": rules(STR, IMMUTABLE),
        "interfaces": s("array", items=s("object", properties={"name": STR})),
    }, [("Allocated Node", ".status.node", "string"), ("Service Name", ".status.serviceName", "string"), ("Service Namespace", ".status.serviceNamespace", "string")]),
    "ServiceBGPStatus": ("servicebgpstatuses", "ServiceBGPStatus says which peers a node announces a Service's IPs to.", {
        "node": rules(STR, IMMUTABLE), "serviceName": rules(STR, IMMUTABLE), "serviceNamespace": rules(STR, IMMUTABLE),
        "peers": STRS,
    }, [("Node", ".status.node", "string"), ("Service Name", ".status.serviceName", "string"), ("Service Namespace", ".status.serviceNamespace", "string")]),
}

# CEL rules on a kind's whole spec.
SPEC_RULES = {
    "BGPAdvertisement": [(
        "!has(self.serviceSelectors) || self.serviceSelectors.size() == 0 || "
        "((!has(self.aggregationLength) || self.aggregationLength == 32) && "
        "(!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))",
        "serviceSelectors need the default aggregationLength (32) and aggregationLengthV6 (128): "
        "an aggregated route would carry Services the selectors leave out")],
}

# Every kind has a status subresource, as MetalLB's; IPAddressPool's counts are written by MetalLB's
# controller (an apply of these CRDs must not prune them).
INT64 = s("integer", format="int64")
STATUS_OF = {
    "IPAddressPool": ({"assignedIPv4": INT64, "assignedIPv6": INT64, "availableIPv4": INT64, "availableIPv6": INT64},
                      ["assignedIPv4", "assignedIPv6", "availableIPv4", "availableIPv6"]),
}

# MetalLB's v1beta1 BGPPeer, still served: its own (older) field set.
OLD_VERSIONS = {
    ("BGPPeer", "v1beta1"): ({k: v for k, v in KINDS["BGPPeer"][3].items() if k in (
        "myASN", "peerASN", "peerAddress", "sourceAddress", "peerPort", "holdTime", "keepaliveTime",
        "routerID", "nodeSelectors", "password", "bfdProfile", "ebgpMultiHop")},
        ["myASN", "peerASN", "peerAddress"]),
}

# MetalLB v0.15.3: one per component, status only (metav1.Condition list, result, error summary).
CONFIGURATION_STATE = {
    "conditions": s("array", items=s("object", required=["lastTransitionTime", "message", "reason", "status", "type"], properties={
        "lastTransitionTime": s("string", format="date-time"),
        "message": s("string", maxLength=32768),
        "observedGeneration": s("integer", format="int64", minimum=0),
        "reason": s("string", maxLength=1024, minLength=1),
        "status": s("string", enum=["True", "False", "Unknown"]),
        "type": s("string", maxLength=316),
    }), **{"x-kubernetes-list-map-keys": ["type"], "x-kubernetes-list-type": "map"}),
    "errorSummary": STR,
    "result": s("string", enum=["Valid", "Invalid", "Unknown"]),
}

def crd(kind, plural, versions, desc, props, required, cols, status=None, status_required=None):
    def root_of(props, required):
        root = {"type": "object", "description": desc, "properties": {
            "apiVersion": STR, "kind": STR, "metadata": s("object")}}
        if props is not None:
            spec = s("object", properties=props)
            if kind in SPEC_RULES:
                spec = rules(spec, *SPEC_RULES[kind])
            if required:
                spec["required"] = required
            root["properties"]["spec"] = spec
        if status is not None:
            st = s("object", properties=status)
            if status_required:
                st["required"] = status_required
            root["properties"]["status"] = st
        return root
    vs = []
    for i, v in enumerate(versions):
        # An older served version with its own fields (MetalLB's v1beta1 BGPPeer).
        vp, vr = OLD_VERSIONS.get((kind, v), (props, required))
        ver = {"name": v, "served": True, "storage": i == len(versions) - 1, "schema": {"openAPIV3Schema": root_of(vp, vr)}}
        if cols:
            ver["additionalPrinterColumns"] = [{"name": n, "jsonPath": p, "type": t} for n, p, t in cols] + [
                {"name": "Age", "jsonPath": ".metadata.creationTimestamp", "type": "date"}]
        if status is not None:
            ver["subresources"] = {"status": {}}
        vs.append(ver)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.metallb.io"},
        "spec": {"group": "metallb.io", "scope": "Namespaced",
                 "names": {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower()},
                 "versions": vs},
    }

class NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def dump(obj, f):
    yaml.dump(obj, f, Dumper=NoAliases, sort_keys=False, allow_unicode=True)


here = os.path.dirname(os.path.abspath(__file__))
for kind, (plural, versions, desc, props, required, cols) in KINDS.items():
    status, status_required = STATUS_OF.get(kind, ({}, None))
    with open(os.path.join(here, f"{plural}.yaml"), "w") as f:
        f.write("# Generated by generate.py: edit that, then run it.\n")
        dump(crd(kind, plural, versions, desc, props, required, cols, status=status, status_required=status_required), f)
with open(os.path.join(here, "configurationstates.yaml"), "w") as f:
    f.write("# Generated by generate.py: edit that, then run it.\n")
    dump(crd("ConfigurationState", "configurationstates", ["v1beta1"],
             "ConfigurationState reports whether the MetalLB configuration a component sees is valid.",
             None, [], [("Result", ".status.result", "string"), ("ErrorSummary", ".status.errorSummary", "string")],
             status=CONFIGURATION_STATE), f)
for kind, (plural, desc, props, cols) in STATUS_KINDS.items():
    with open(os.path.join(here, f"{plural}.yaml"), "w") as f:
        f.write("# Generated by generate.py: edit that, then run it.\n")
        dump(crd(kind, plural, ["v1beta1"], desc, {}, [], cols, status=props), f)
