"""`onceflow match train|eval`: estimate a SyncPolicy's matching m/u from records, measure it on labels.

Why a command: the m/u that separate duplicates from neighbours depend on the target system's
data (how many customers share a town, how carefully names are keyed). `train` estimates them
unsupervised (EM, `onceflow_runner.matching.training`) from a sample of the target's records (a
JSON array, JSON Lines or CSV file with `--records`; CSV headers may be dotted paths such as
`address.city`), or read through the Connector of one side of the policy's `reconcile` block with
`--from left|right` (its path and paging, the Connector's credentials, as the drift check reads
it), or from reviewers' labels (`--labels`, JSON Lines of {left, right, same}), and
prints the `spec.matching` patch, or merge-patches the SyncPolicy with `--apply`. `eval` prints
precision, recall and F1 of the policy's matching on labelled pairs. The policy comes from the
cluster, or from manifests with `-f` for offline use. Every failure is one line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from onceflow_operator.cli.cluster import Cluster, cluster_options
from onceflow_operator.cli.output import OUTPUT_FORMATS, dump, emit_rows, expand_paths, manifests_option, output_option

if TYPE_CHECKING:
    from onceflow_operator.api.syncpolicy import SyncPolicy
    from onceflow_runner.matching.model import MatchModel
    from onceflow_runner.matching.training import LabelledPair

__all__ = ["match"]

API_VERSION = "onceflow.io/v1alpha1"


def _csv_rows(text: str) -> list[dict[str, Any]]:
    """CSV rows by header; the delimiter sniffed among , ; tab and | (spreadsheets export semicolons)."""
    lines = text.splitlines()
    try:
        dialect: Any = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return [{k: (v or None) for k, v in row.items()} for row in csv.DictReader(lines, dialect=dialect)]


def _json_rows(path: Path, text: str) -> list[Any]:
    """A JSON array, or JSON Lines (a bad line named by its number)."""
    if text.lstrip().startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise click.ClickException(f"{path} is not a JSON array: {exc}") from None
        return parsed if isinstance(parsed, list) else []
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            raise click.ClickException(f"{path}:{number}: not JSON ({exc}); the file is read as JSON Lines") from None
    return rows


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a JSON array, JSON Lines, or CSV with a header row (empty cells are missing values).

    A byte order mark (spreadsheet exports write one) is dropped: kept, it renamed the first column.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    rows = _csv_rows(text) if path.suffix.lower() == ".csv" else _json_rows(path, text)
    records = [r for r in rows if isinstance(r, dict)]
    if len(records) < 2:
        raise click.ClickException(f"{path} holds {len(records)} record(s); training needs a sample (hundreds or more)")
    return records


def read_labels(path: Path) -> list[LabelledPair]:
    """Labelled pairs from JSON Lines of {"left": {...}, "right": {...}, "same": true|false}."""
    from onceflow_runner.matching.training import LabelledPair

    labels: list[LabelledPair] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise click.ClickException(f"{path}:{number}: not JSON ({exc})") from None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("left"), dict)
            and isinstance(item.get("right"), dict)
            and isinstance(item.get("same"), bool)
        ):
            raise click.ClickException(
                f'{path}:{number}: a label is {{"left": {{...}}, "right": {{...}}, "same": true|false}}'
            )
        labels.append(LabelledPair(item["left"], item["right"], item["same"]))
    if not labels:
        raise click.ClickException(f"{path} holds no labels")
    return labels


def label_problems(model: MatchModel, labels: list[LabelledPair]) -> list[str]:
    """What skews figures measured on `labels`: pairs nothing can be compared on, and contradicting verdicts.

    Why said: such pairs still count (as not flagged, or once each way), so an export with the
    target's own field names, or two reviewers disagreeing, would read as a weak model.
    """
    blind = sum(
        all(f.prepared(lab.left) is None or f.prepared(lab.right) is None for f in model.fields) for lab in labels
    )
    verdicts: dict[frozenset[str], set[bool]] = {}
    for lab in labels:
        key = frozenset(json.dumps(side, sort_keys=True, default=str) for side in (lab.left, lab.right))
        verdicts.setdefault(key, set()).add(lab.same)
    both = sum(len(v) == 2 for v in verdicts.values())
    notes = []
    if blind:
        notes.append(
            f"{blind} of {len(labels)} labelled pairs share no compared field (a value on both sides): they count as "
            "not flagged; map the target's field names (canonical names are compared)"
        )
    if both:
        notes.append(f"{both} pair(s) labelled both the same and not the same: each verdict is counted")
    return notes


def _policy(files: tuple[Path, ...], cluster: Cluster, name: str) -> tuple[SyncPolicy, str]:
    """The SyncPolicy named `name` from the manifests (-f) or the cluster, and its namespace."""
    import pydantic
    import yaml

    from onceflow_operator.api.syncpolicy import SyncPolicy
    from onceflow_operator.compiler.validation import load_manifests

    found: dict[str, Any] | None = None
    namespace = ""
    if files:
        for path in expand_paths(files):
            try:
                docs = list(load_manifests(path))
            except (OSError, yaml.YAMLError) as exc:
                raise click.ClickException(f"cannot read {path}: {exc}") from None
            for doc in docs:
                if doc.get("kind") == "SyncPolicy" and (doc.get("metadata") or {}).get("name") == name:
                    found = doc
        if found is None:
            raise click.ClickException(f"no SyncPolicy named {name!r} in the given manifests (-f)")
        namespace = str((found.get("metadata") or {}).get("namespace") or "")
    else:
        namespace = cluster.namespace
        found = cluster.run(lambda kube: kube.get(API_VERSION, "SyncPolicy", namespace, name))
        if found is None:
            raise click.ClickException(
                f"SyncPolicy {name} not found in namespace {namespace} (give -n, or -f manifests)"
            )
    try:
        return SyncPolicy.model_validate(found), namespace
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise click.ClickException(f"SyncPolicy {name}: {where}: {first['msg']}") from None


def _model(policy: SyncPolicy) -> MatchModel:
    """The policy's matching model (its fields, or its entity's defaults when it has no matching block)."""
    from onceflow_operator.api.syncpolicy import Matching
    from onceflow_operator.compiler.matching import matching_plan, matching_problems
    from onceflow_runner.matching.model import model_from_plan

    if policy.spec.matching is None:
        policy = policy.model_copy(update={"spec": policy.spec.model_copy(update={"matching": Matching()})})
    problems = list(matching_problems(policy))
    if problems:
        path, message = problems[0]
        raise click.ClickException(f"{path}: {message}")
    compiled = matching_plan(policy)
    assert compiled is not None
    return model_from_plan(compiled)


def _manifest_docs(files: tuple[Path, ...]) -> list[dict[str, Any]]:
    import yaml

    from onceflow_operator.compiler.validation import load_manifests

    docs: list[dict[str, Any]] = []
    for path in expand_paths(files):
        try:
            docs += list(load_manifests(path))
        except (OSError, yaml.YAMLError) as exc:
            raise click.ClickException(f"cannot read {path}: {exc}") from None
    return docs


def _secret_reader(secrets: dict[str, dict[str, Any]]) -> Callable[[Any], str]:
    """A runner's SecretReader over Secret objects (data base64, or stringData); one line when a key is absent."""
    import base64

    def read(ref: Any) -> str:
        if ref is None:
            return ""
        secret = secrets.get(ref.name) or {}
        if ref.key in (secret.get("stringData") or {}):
            return str(secret["stringData"][ref.key])
        if ref.key in (secret.get("data") or {}):
            return base64.b64decode(secret["data"][ref.key]).decode()
        raise click.ClickException(f"Secret {ref.name} has no key {ref.key!r} (the Connector names it)")

    return read


def pull_records(
    files: tuple[Path, ...], cluster: Cluster, policy: SyncPolicy, namespace: str, side: str
) -> list[dict[str, Any]]:
    """Every record of one side of the policy's reconcile block, read page by page through its Connector."""
    import asyncio

    from onceflow_operator.api.connector import Connector
    from onceflow_operator.compiler.planner import InvalidSpec, drift_check_plan
    from onceflow_runner.adapters.outbound import HttpCaller
    from onceflow_runner.drift.job import read_side
    from onceflow_runner.errors import OnceflowError

    if policy.spec.reconcile is None:
        raise click.ClickException(
            f"SyncPolicy {policy.metadata.get('name')} has no reconcile block: --from reads one of its sides"
        )
    wanted = getattr(policy.spec.reconcile, side).connector
    if files:
        docs = _manifest_docs(files)
        connector_docs = [d for d in docs if d.get("kind") == "Connector"]
        secrets = {str(d["metadata"]["name"]): d for d in docs if d.get("kind") == "Secret"}
    else:
        from onceflow_operator.api.names import CREDENTIALS_LABEL

        async def read(kube: Any) -> tuple[Any, Any]:
            found = await kube.get(API_VERSION, "Connector", namespace, wanted)
            listed = await kube.list("v1", "Secret", namespace, selector=f"{CREDENTIALS_LABEL}=true")
            return found, listed

        found, listed = cluster.run(read)
        connector_docs = [found] if found else []
        secrets = {str(s["metadata"]["name"]): s for s in listed}
    connectors = {}
    for doc in connector_docs:
        try:
            connectors[str(doc["metadata"]["name"])] = Connector.model_validate(doc)
        except ValueError:
            continue
    try:
        plan = drift_check_plan(policy, connectors, namespace=namespace or "default")
    except InvalidSpec as exc:
        raise click.ClickException(str(exc)) from None
    chosen = getattr(plan, side)

    async def pull() -> Any:
        caller = HttpCaller({side: chosen.connector}, _secret_reader(secrets))
        try:
            return await read_side(caller, side, chosen)
        finally:
            await caller.aclose()

    try:
        paged = asyncio.run(pull())
    except OnceflowError as exc:
        raise click.ClickException(f"reading {side} ({wanted}): {exc}") from None
    if not paged.complete:
        click.echo(f"# maxPages stopped the reading after {paged.pages} page(s): training on the rows read", err=True)
    return [r for r in paged.items if isinstance(r, dict)]


def _renamed(records: list[dict[str, Any]], renames: tuple[str, ...]) -> list[dict[str, Any]]:
    """Records with `canonical=target` renames applied: the target's field read under the canonical name."""
    from onceflow_runner.matching.fields import field_value

    pairs = []
    for rename in renames:
        canonical, sep, target = rename.partition("=")
        if not sep or not canonical or not target:
            raise click.BadParameter(
                f"{rename!r} is not canonical=target (e.g. name=customer_name)", param_hint="--field"
            )
        pairs.append((canonical, target))
    return [{**r, **{c: field_value(r, t) for c, t in pairs}} for r in records] if pairs else records


def matching_patch(policy: SyncPolicy, model: MatchModel) -> dict[str, Any]:
    """The merge patch writing the model's fields, m/u and prior into `spec.matching` (the rest kept)."""
    current = policy.spec.matching.model_dump(by_alias=True, exclude_none=True) if policy.spec.matching else {}
    fields = []
    for f in model.fields:
        entry: dict[str, Any] = {"field": f.paths[0], "comparison": f.kind}
        if len(f.paths) == 2:
            entry["lastNameField"] = f.paths[1]
        # Significant digits, not decimals: a rare level's m of 4e-7 rounded to 6 decimals was 0,
        # which the API server refuses (m and u are above 0).
        entry["levels"] = [
            {"level": level, "m": float(f"{m:.6g}"), "u": float(f"{max(u, 1e-12):.6g}")}
            for level, m, u in zip(f.levels, f.m, f.u, strict=True)
        ]
        exact, different = entry["levels"][0], entry["levels"][-1]
        if exact["m"] < exact["u"] or different["m"] > different["u"]:
            raise click.ClickException(
                f"{f.name}: trained m/u make agreement count against a match (exact m={exact['m']} u={exact['u']}); "
                "the sample's records agree on it by chance as often as duplicates do: train on a larger, varied "
                "sample, or leave the field out of matching.fields"
            )
        fields.append(entry)
    current.pop("entity", None)
    return {"spec": {"matching": {**current, "fields": fields, "priorLinkRate": float(f"{model.prior:.3g}")}}}


def _refuse_invalid(policy: SyncPolicy, patch: dict[str, Any]) -> None:
    """One line when the patched policy would be refused (schema and CEL, as `onceflow validate` checks).

    Why: a patch is only worth printing if `kubectl apply` and `--apply` accept it; estimates from a
    small or odd sample can leave the ranges spec.matching allows (a prior of 0.5, m below u).
    """
    from onceflow_operator.compiler.validation import validate_manifest

    manifest = policy.model_dump(by_alias=True, exclude_none=True, mode="json")
    manifest["spec"]["matching"] = patch["spec"]["matching"]
    problems = validate_manifest(manifest, "trained patch")
    if problems:
        first = problems[0]
        raise click.ClickException(
            f"the trained matching would be refused ({first.path}: {first.message}); "
            "train on a larger, more varied sample"
        )


@click.group()
def match() -> None:
    """Probabilistic matching of a SyncPolicy: estimate m/u (train), measure on labels (eval)."""


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    func = manifests_option("SyncPolicy manifests (file or folder) instead of the cluster.", required=False)(func)
    return click.argument("policy")(func)


@match.command()
@_common
@click.option(
    "--records",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sample of target records (JSON, JSONL, CSV).",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Reviewer labels (JSONL of left, right, same): m/u from them.",
)
@click.option(
    "--from",
    "side",
    type=click.Choice(("left", "right")),
    help="Read the sample through the Connector of this side of the policy's reconcile block (every page).",
)
@click.option(
    "--field",
    "renames",
    multiple=True,
    metavar="CANONICAL=TARGET",
    help="Read the target's field under the canonical name, e.g. name=customer_name (repeatable).",
)
@click.option(
    "--block",
    "blocks",
    multiple=True,
    help="Field the candidates are searched by (repeatable; default: name and postal_code when compared).",
)
@click.option(
    "--apply",
    "apply_patch",
    is_flag=True,
    help="Merge-patch the SyncPolicy in the cluster instead of printing the patch.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="yaml",
    show_default=True,
    help="yaml or json: the patch; table or wide: the trained weights per field and level.",
)
@cluster_options
def train(
    policy: str,
    files: tuple[Path, ...],
    records: Path | None,
    labels: Path | None,
    side: str | None,
    renames: tuple[str, ...],
    blocks: tuple[str, ...],
    apply_patch: bool,
    output: str,
    cluster: Cluster,
) -> None:
    """Estimate m/u for POLICY's matching from records (EM) or labels, and print or apply the patch."""
    from onceflow_runner.matching import training

    if sum(x is not None for x in (records, labels, side)) != 1:
        raise click.UsageError(
            "give one of --records (a sample of the target's records), --from left|right (read it through the "
            "Connector) or --labels (reviewers' decisions)"
        )
    if apply_patch and files:
        raise click.UsageError("--apply writes to the cluster; without -f the policy is read from there too")
    sync_policy, namespace = _policy(files, cluster, policy)
    model = _model(sync_policy)
    if labels is not None:
        pairs_read = read_labels(labels)
        absent = training.absent_fields(model, (side for lab in pairs_read for side in (lab.left, lab.right)))
        if absent:
            click.echo(f"# not in the labels, m/u kept as they are: {', '.join(absent)}", err=True)
        try:
            trained = training.estimate_from_labels(model, pairs_read)
        except ValueError as exc:
            raise click.ClickException(f"{labels}: {exc}") from None
        note = f"m/u from {labels}"
    else:
        if records is not None:
            sample = _renamed(read_records(records), renames)
        else:
            assert side is not None
            sample = _renamed(pull_records(files, cluster, sync_policy, namespace, side), renames)
            if len(sample) < 2:
                raise click.ClickException(f"{side} listed {len(sample)} record(s); training needs a sample")
        source = str(records) if records is not None else f"the {side} side's records"
        absent = training.absent_fields(model, sample)
        if len(absent) == len(model.fields):
            raise click.ClickException(
                f"none of the compared fields ({', '.join(absent)}) is in {source}; the records' fields are "
                f"{', '.join(map(str, list(sample[0])[:8]))}: give the CSV a header row of field names, "
                "or map them with --field canonical=target"
            )
        compared = {p for f in model.fields for p in f.paths}
        chosen = list(blocks) or [b for b in ("name", "postal_code") if b in compared] or [model.fields[0].paths[0]]
        try:
            pairs = training.blocks_by_fields(model, sample, chosen)
            count = sum(len(p) for p in pairs.values())
            if not count:
                raise ValueError(
                    f"no candidate pairs in {source}: no two records agree on {', '.join(chosen)} within a block of "
                    "at most 200 records (all alike, or all different); train on a real sample, or give --block"
                )
            trained = training.train(model, sample, pairs)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if absent:
            click.echo(f"# not in the sample, m/u kept as they are: {', '.join(absent)}", err=True)
        note = (
            f"u from random pairs of {len(sample)} records, m by EM over {count} pairs blocked by {', '.join(chosen)}"
        )
    patch = matching_patch(sync_policy, trained)
    _refuse_invalid(sync_policy, patch)
    if not apply_patch:
        click.echo(f"# {note}; apply with --apply, or put into the SyncPolicy's manifest", err=True)
        if output in ("yaml", "json"):
            click.echo(dump(patch, output))
            return
        rows = [
            {"field": f, "level": level, "m": f"{m:.4f}", "u": f"{u:.6f}", "weight": f"{w:+.2f}"}
            for f, level, m, u, w in training.weights_table(trained)
        ]
        emit_rows(rows, output, ["field", "level", "m", "u", "weight"])
        return

    async def write(kube: Any) -> None:
        await kube.merge_patch(API_VERSION, "SyncPolicy", namespace, policy, patch)

    cluster.run(write)
    click.echo(f"syncpolicy.onceflow.io/{policy} matching trained ({note})")


@match.command(name="eval")
@_common
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSONL of left, right, same.",
)
@output_option
@cluster_options
def evaluate(policy: str, files: tuple[Path, ...], labels: Path, output: str, cluster: Cluster) -> None:
    """Precision, recall and F1 of POLICY's matching on labelled pairs (flagged = certain match or review)."""
    from onceflow_runner.matching import training

    sync_policy, _ = _policy(files, cluster, policy)
    model = _model(sync_policy)
    pairs = read_labels(labels)
    for note in label_problems(model, pairs):
        click.echo(f"# {note}", err=True)
    result = training.evaluate(model, pairs)
    figures = {
        "pairs": result.pairs,
        "precision": round(result.precision, 4),
        "recall": round(result.recall, 4),
        "f1": round(result.f1, 4),
        "truePositives": result.true_positives,
        "falsePositives": result.false_positives,
        "falseNegatives": result.false_negatives,
        "certainMatches": result.certain,
        "certainMatchesWrong": result.certain_wrong,
    }
    emit_rows(
        [figures],
        output,
        ["pairs", "precision", "recall", "f1", "certainMatches", "certainMatchesWrong"],
        ["truePositives", "falsePositives", "falseNegatives"],
    )
