"""Valid base objects and invalid mutations shared by the offline and API-server tests.

Each invalid case is checked twice: `onceflow validate` must refuse it offline, and the real API
server must refuse it at apply time, both naming the field. Keeping one table proves the two
layers agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


def connector_rest(name: str = "erp") -> Obj:
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Connector",
        "metadata": {"name": name},
        "spec": {
            "type": "REST",
            "rest": {
                "baseURL": "http://erp.example.test:8000",
                "auth": {"type": "Bearer", "bearer": {"tokenRef": {"name": "erp", "key": "token"}}},
            },
        },
    }


def connector_webhook(name: str = "crm") -> Obj:
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Connector",
        "metadata": {"name": name},
        "spec": {
            "type": "Webhook",
            "webhook": {
                "path": "/crm",
                "signature": {"scheme": "standard-webhooks", "secretRef": {"name": "crm", "key": "secret"}},
            },
        },
    }


def integration(name: str = "onboard") -> Obj:
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": name},
        "spec": {
            "version": "1.0.0",
            "trigger": {"connector": {"name": "crm", "event": "customer.approved"}},
            "steps": [
                {"name": "canonical", "map": {"fields": {"name": "input.company", "tax_id": "input.tax"}}},
                {"name": "check", "validate": {"entity": "customer"}},
                {"name": "create", "call": {"connector": "erp", "path": '"/api/resource/Customer"'}},
            ],
        },
    }


def syncpolicy(name: str = "customer") -> Obj:
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "SyncPolicy",
        "metadata": {"name": name},
        "spec": {"entity": "customer", "ownership": {"default": "erp"}, "identity": {"keys": ["tax_id"]}},
    }


@dataclass(frozen=True)
class Invalid:
    """An object that must be refused, the field path the refusal names, and words it says."""

    id: str
    make: Callable[[], Obj]
    field: str
    says: str
    #: What the API server says instead, when it differs: server-side apply names list-map
    #: entries by key, e.g. spec.steps[name="check"], and refuses duplicate keys itself.
    server_says: str | None = None


def _with(base: Callable[[], Obj], change: Callable[[Obj], None]) -> Callable[[], Obj]:
    def make() -> Obj:
        obj = copy.deepcopy(base())
        change(obj)
        return obj

    return make


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        node = obj
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value

    return change


def _all(*changes: Callable[[Obj], None]) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        for one in changes:
            one(obj)

    return change


def _delete(path: str) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        node = obj
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return change


def _schedule(**changes: Any) -> Obj:
    """A runnable schedule trigger (the invoice-polling example's shape), changed by `changes`."""
    schedule: Obj = {
        "interval": "30s",
        "poll": {
            "connector": "erp",
            "path": "/api/resource/Sales Invoice",
            "query": {"filters": '\'[["modified", ">=", "\' + watermark + \'"]]\'', "order_by": "'modified asc'"},
            "paging": {"style": "Offset", "pageSize": 100},
            "watermark": {"expression": "row.modified", "format": "%Y-%m-%d %H:%M:%S.%f"},
        },
    }
    for key, value in changes.items():
        schedule[key] = value
    return schedule


INVALID: tuple[Invalid, ...] = (
    Invalid(
        "inline-secret-value",
        _with(connector_rest, _set("spec.rest.auth.bearer.token", "s3cr3t")),
        "spec.rest.auth.bearer.token",
        "inline secret values are not accepted",
    ),
    Invalid(
        "two-step-kinds",
        _with(integration, _set("spec.steps.1.filter", {"condition": "true"})),
        "spec.steps[1]",
        "exactly one of validate, map",
    ),
    Invalid(
        "unknown-step-kind",
        _with(integration, _set("spec.steps.1", {"name": "check", "transform": {"x": "y"}})),
        "spec.steps[1]",
        "transform",
        server_says='.spec.steps[name="check"].transform: field not declared in schema',
    ),
    Invalid(
        "duplicate-step-names",
        _with(integration, _set("spec.steps.1.name", "canonical")),
        "spec.steps[1]",
        "Duplicate value",
        server_says='.spec.steps: duplicate entries for key [name="canonical"]',
    ),
    Invalid("negative-replicas", _with(integration, _set("spec.replicas", -1)), "spec.replicas", "0"),
    Invalid(
        "weight-101",
        _with(
            integration,
            _set("spec.strategy", {"type": "Canary", "canary": {"steps": [{"setWeight": 101}]}}),
        ),
        "spec.strategy.canary.steps[0].setWeight",
        "100",
    ),
    Invalid(
        "max-deliver-not-above-backoff",
        _with(integration, _set("spec.errorPolicy", {"backoff": ["1s", "5s", "30s"], "maxDeliver": 3})),
        "spec.errorPolicy",
        "maxDeliver must be greater than the number of backoff delays",
    ),
    Invalid("missing-trigger", _with(integration, _delete("spec.trigger")), "spec.trigger", "equired"),
    Invalid(
        "trigger-subject-in-any-namespace",
        _with(integration, _set("spec.trigger", {"subject": "onceflow.*.in.>"})),
        "spec.trigger.subject",
        "must name this Integration's own namespace literally",
    ),
    Invalid(
        "two-triggers",
        _with(integration, _set("spec.trigger.subject", "onceflow.x.events.customer.created")),
        "spec.trigger",
        "exactly one of connector",
    ),
    Invalid(
        "bad-url",
        _with(connector_rest, _set("spec.rest.baseURL", "erp.example.test")),
        "spec.rest.baseURL",
        "",
    ),
    Invalid(
        "credentials-in-base-url",
        _with(connector_rest, _set("spec.rest.baseURL", "https://admin:s3cr3t@erp.example.test")),
        "spec.rest.baseURL",
        "rest.baseURL must not carry credentials",
    ),
    # Gateway processes per pod: none, negative, or past 16 (each is an interpreter of its own).
    Invalid(
        "no-gateway-processes",
        _with(connector_webhook, _set("spec.webhook.processesPerPod", 0)),
        "spec.webhook.processesPerPod",
        "1",
    ),
    Invalid(
        "negative-gateway-processes",
        _with(connector_webhook, _set("spec.webhook.processesPerPod", -3)),
        "spec.webhook.processesPerPod",
        "1",
    ),
    Invalid(
        "huge-gateway-processes",
        _with(connector_webhook, _set("spec.webhook.processesPerPod", 4096)),
        "spec.webhook.processesPerPod",
        "16",
    ),
    Invalid(
        "bad-signature-scheme",
        _with(connector_webhook, _set("spec.webhook.signature.scheme", "md5")),
        "spec.webhook.signature.scheme",
        "",
    ),
    Invalid(
        "hmac-without-header",
        _with(connector_webhook, _set("spec.webhook.signature.scheme", "hmac")),
        "spec.webhook.signature",
        "header is required for scheme hmac",
    ),
    Invalid("bad-entity", _with(syncpolicy, _set("spec.entity", "pallet")), "spec.entity", "pallet"),
    Invalid(
        "canary-without-steps",
        _with(integration, _set("spec.strategy", {"type": "Canary"})),
        "spec.strategy",
        "strategy Canary needs canary.steps",
    ),
    Invalid(
        "auth-type-without-block",
        _with(connector_rest, _set("spec.rest.auth", {"type": "Basic"})),
        "spec.rest.auth",
        "names a block that is missing",
    ),
    Invalid(
        "rest-type-with-webhook-block",
        _with(connector_rest, _set("spec.type", "Webhook")),
        "spec",
        "type REST needs a rest block",
    ),
    Invalid(
        "name-with-dot",
        _with(integration, _set("metadata.name", "orders.v2")),
        "metadata.name",
        "DNS label",
    ),
    Invalid(
        "step-name-not-identifier",
        _with(integration, _set("spec.steps.0.name", "make-canonical")),
        "spec.steps[0].name",
        "",
    ),
    Invalid(
        "match-rule-empty",
        _with(syncpolicy, _set("spec.matchRules", [{"name": "nothing"}])),
        "spec.matchRules[0]",
        "a match rule needs exact fields",
    ),
    Invalid(
        "matching-level-not-of-its-comparison",
        _with(
            syncpolicy,
            _set(
                "spec.matching",
                {
                    "fields": [
                        {"field": "name", "comparison": "text", "levels": [{"level": "swapped", "m": 0.5, "u": 0.1}]}
                    ]
                },
            ),
        ),
        "spec.matching.fields[0]",
        "each levels[].level must be a level of the comparison",
    ),
    Invalid(
        "matching-person-name-without-last-name",
        _with(syncpolicy, _set("spec.matching", {"fields": [{"field": "first", "comparison": "personName"}]})),
        "spec.matching.fields[0]",
        "lastNameField is set exactly when comparison is personName",
    ),
    Invalid(
        "matching-review-above-match",
        _with(syncpolicy, _set("spec.matching", {"thresholds": {"match": 0.9, "review": 0.95}})),
        "spec.matching.thresholds",
        "thresholds.review must be below thresholds.match",
    ),
    Invalid(
        "matching-exact-level-weighs-against",
        _with(
            syncpolicy,
            _set(
                "spec.matching",
                {
                    "fields": [
                        {"field": "name", "comparison": "text", "levels": [{"level": "exact", "m": 0.1, "u": 0.5}]}
                    ]
                },
            ),
        ),
        "spec.matching.fields[0].levels[0]",
        "at level exact m must be at least u",
    ),
    Invalid(
        "matching-different-level-weighs-for",
        _with(
            syncpolicy,
            _set(
                "spec.matching",
                {
                    "fields": [
                        {"field": "name", "comparison": "text", "levels": [{"level": "different", "m": 0.9, "u": 0.1}]}
                    ]
                },
            ),
        ),
        "spec.matching.fields[0].levels[0]",
        "at level different m must be at most u",
    ),
    Invalid(
        "matching-level-twice",
        _with(
            syncpolicy,
            _set(
                "spec.matching",
                {
                    "fields": [
                        {
                            "field": "name",
                            "comparison": "text",
                            "levels": [{"level": "exact", "m": 0.9, "u": 0.1}, {"level": "exact", "m": 0.8, "u": 0.1}],
                        }
                    ]
                },
            ),
        ),
        "spec.matching.fields[0]",
        "each level may be listed once in levels",
    ),
    Invalid(
        "matching-field-twice",
        _with(
            syncpolicy,
            _set(
                "spec.matching",
                {
                    "fields": [
                        {"field": "address.city", "comparison": "text"},
                        {"field": "address.city", "comparison": "exact"},
                    ]
                },
            ),
        ),
        "spec.matching",
        "each field may be compared once in matching.fields",
    ),
    Invalid(
        "matching-field-with-an-empty-path-step",
        _with(syncpolicy, _set("spec.matching", {"fields": [{"field": "address..city", "comparison": "text"}]})),
        "spec.matching.fields[0].field",
        "should match",
    ),
    Invalid(
        "matching-unknown-comparison",
        _with(syncpolicy, _set("spec.matching", {"fields": [{"field": "name", "comparison": "soundex"}]})),
        "spec.matching.fields[0].comparison",
        "soundex",
    ),
    Invalid(
        "matching-prior-of-one",
        _with(syncpolicy, _set("spec.matching", {"priorLinkRate": 1})),
        "spec.matching.priorLinkRate",
        "less than 0.5",
        "priorLinkRate is a probability above 0 and below 0.5",
    ),
    Invalid(
        "matching-u-of-zero",
        _with(
            syncpolicy,
            _set(
                "spec.matching",
                {"fields": [{"field": "name", "comparison": "text", "levels": [{"level": "exact", "m": 0.9, "u": 0}]}]},
            ),
        ),
        "spec.matching.fields[0].levels[0].u",
        "0",
    ),
    Invalid(
        "matching-without-defaults-or-fields",
        _with(syncpolicy, _all(_set("spec.entity", "order"), _set("spec.matching", {}))),
        "spec",
        "only customer, supplier and item have default fields",
    ),
    Invalid(
        "suggestion-changes-credit",
        _with(
            integration,
            _set(
                "spec.steps.1.validate.rules",
                [
                    {
                        "expression": "record.credit_limit <= 250000.0",
                        "message": "credit_limit is above policy",
                        "suggest": {"field": "data.credit_limit", "value": "250000"},
                    }
                ],
            ),
        ),
        "spec.steps[1].validate.rules[0].suggest",
        "price and credit fields are never changed by a suggestion",
    ),
    Invalid(
        "path-template-unclosed-placeholder",
        _with(integration, _set("spec.steps.2.call.path", "/api/resource/Customer/{record.name")),
        "spec.steps[2].call.path",
        "a path starting with / is literal text with {expression} placeholders",
    ),
    Invalid(
        "reconcile-path-with-placeholder",
        _with(
            syncpolicy,
            _set(
                "spec.reconcile",
                {
                    "left": {"connector": "erp", "path": "/api/resource/Customer/{record.name}", "keyField": "tax_id"},
                    "right": {"connector": "shop", "path": "/customers", "keyField": "tax_id"},
                },
            ),
        ),
        "spec.reconcile.left.path",
        "a reconcile path lists every record, so it has no {placeholder}",
    ),
    Invalid(
        "cursor-paging-without-next",
        _with(
            integration,
            _set(
                "spec.steps.1",
                {
                    "name": "check",
                    "lookup": {"connector": "erp", "path": "/api/resource/Customer", "paging": {"style": "Cursor"}},
                },
            ),
        ),
        "spec.steps[1].lookup.paging",
        "next is set for the Cursor and NextLink styles only",
    ),
    Invalid(
        "offset-paging-with-next",
        _with(
            syncpolicy,
            _set(
                "spec.reconcile",
                {
                    "left": {
                        "connector": "erp",
                        "path": "/api/resource/Customer",
                        "keyField": "tax_id",
                        "paging": {"style": "Offset", "next": "response.next"},
                    },
                    "right": {"connector": "shop", "path": "/customers", "keyField": "tax_id"},
                },
            ),
        ),
        "spec.reconcile.left.paging",
        "next is set for the Cursor and NextLink styles only",
    ),
    Invalid(
        "schedule-with-cron-and-interval",
        _with(integration, _set("spec.trigger", {"schedule": _schedule(cron="*/5 * * * *")})),
        "spec.trigger.schedule",
        "exactly one of cron",
    ),
    Invalid(
        "schedule-and-webhook-trigger",
        _with(integration, _set("spec.trigger.schedule", _schedule())),
        "spec.trigger",
        "trigger sets exactly one of connector",
    ),
    Invalid(
        "schedule-interval-not-a-duration",
        _with(integration, _set("spec.trigger", {"schedule": _schedule(interval="every 5 minutes")})),
        "spec.trigger.schedule.interval",
        "should match pattern",
        server_says="spec.trigger.schedule.interval",
    ),
    Invalid(
        "schedule-poll-cursor-paging-without-next",
        _with(
            integration,
            _set(
                "spec.trigger",
                {"schedule": {**_schedule(), "poll": {**_schedule()["poll"], "paging": {"style": "Cursor"}}}},
            ),
        ),
        "spec.trigger.schedule.poll.paging",
        "next is set for the Cursor and NextLink styles only",
    ),
)
