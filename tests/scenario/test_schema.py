"""The file formats, declared once (src/marketsim/scenario/schema.py): the published JSON Schema and the docs' field
reference are what the definitions generate; the JSON Schema and the validator agree (the schema never
flags a file the validator accepts, and flags the per-field problems it reports); `marketsim validate`
prints a file that loads back to the same scenario; a file of the wrong kind names its command."""

import copy
import datetime as dt
import json
import math
from itertools import islice

import numpy as np
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from marketsim.scenario import describe, schema
from marketsim.scenario.core import (
    ScenarioError,
    _Lines,
    _Validator,
    load_scenario,
    parse_scenario,
    parse_text,
    scenario_files,
)
from tests.helpers import BUNDLED, ROOT, SCENARIOS, cli

EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.yaml"))
SCENARIO_FILES = BUNDLED + EXAMPLES
SWEEP_FILES = sorted(SCENARIOS.glob("sweep_*.yaml"))


def marketsim(*args, cwd):
    """``marketsim ARGS`` in this process (tests/helpers.py ``cli``)."""
    return cli(*args, cwd=cwd)


def as_editor_sees(x):
    """YAML data as an editor's YAML 1.2 parser gives it to the JSON Schema: dates are strings."""
    if isinstance(x, dict):
        return {(k.isoformat() if isinstance(k, dt.date) else str(k)): as_editor_sees(v) for k, v in x.items()}
    if isinstance(x, list):
        return [as_editor_sees(v) for v in x]
    if isinstance(x, dt.date):
        return x.isoformat()
    return x


@pytest.fixture(scope="module")
def validators():
    """Both drafts: 2020-12 (what the file declares) and 7 (what VS Code's YAML extension implements)."""
    out = {}
    for kind in ("scenario", "sweep"):
        doc = json.loads((ROOT / "schema" / f"{kind}.schema.json").read_text())
        out[kind] = (Draft202012Validator(doc), Draft7Validator(doc))
    return out


def schema_errors(validators, kind, data) -> list[str]:
    """The first error of ``data`` under the published schema (an empty list if none); both drafts must agree on
    whether there is one. (Only the first: every caller asks whether there is an error or shows the first, and
    validation stops there, which keeps the 2,000 edits below fast.)"""
    v20, v7 = validators[kind]
    data = as_editor_sees(data)
    e20, e7 = (
        [e.message for e in islice(v20.iter_errors(data), 1)],
        [e.message for e in islice(v7.iter_errors(data), 1)],
    )
    assert bool(e20) == bool(e7), (e20, e7)
    return e20


# --------------------------------------------------------------------------- generated files are in sync


@pytest.mark.parametrize("kind", ["scenario", "sweep"])
def test_published_schema_is_what_the_definitions_generate(kind):
    published = (ROOT / "schema" / f"{kind}.schema.json").read_text()
    assert published == schema.schema_text(kind), (
        "run `marketsim schema --write` after editing src/marketsim/scenario/schema.py"
    )
    doc = json.loads(published)
    Draft202012Validator.check_schema(doc)
    Draft7Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_docs_field_reference_is_what_the_definitions_generate():
    doc = (ROOT / "docs" / "scenarios.md").read_text()
    assert schema.with_reference(doc) == doc, (
        "run `marketsim schema --write` after editing src/marketsim/scenario/schema.py"
    )
    for path in (
        "`consumers.turnover`",
        "`retailers[].sso_share.PROVIDER`",
        "`events[].migration_cost`",
        "`observations[].period`",
        "`FIELD.range`",
        "`design.method`",
    ):
        assert path in doc


def test_schema_uses_no_keyword_draft7_reads_differently():
    """VS Code's YAML extension implements draft 7: no prefixItems/$defs-only features, no $ref with siblings."""

    def walk(x):
        if isinstance(x, dict):
            assert not {"prefixItems", "unevaluatedProperties", "dependentRequired", "$dynamicRef"} & set(x)
            if "$ref" in x:
                assert set(x) == {"$ref"}, x
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for kind in ("scenario", "sweep"):
        walk(schema.json_schema(kind))


def test_the_spec_matches_the_model_registries():
    from marketsim.engine.events import HANDLERS
    from marketsim.engine.network import GENERATORS

    assert set(schema.NETWORK.variants) == set(GENERATORS)
    assert set(schema.ACTIONS) == set(HANDLERS)
    v = _Validator("spec", _Lines(None, "spec"))
    for path, f in _leaves(schema.SCENARIO, ""):
        if isinstance(f, schema.Field) and f.default is not None and not f.file_only:
            v.check(f, copy.deepcopy(f.default), path)  # every stated default passes its own field's checks


def _leaves(node, path):
    if isinstance(node, schema.Block):
        for f in node.fields:
            yield from _leaves(f, f"{path}.{f.key}")
    elif isinstance(node, schema.ListOf):
        yield from _leaves(node.item, path)
    elif isinstance(node, schema.MapOf):
        yield from _leaves(node.value, path)
    elif isinstance(node, schema.Variants):
        for t in node.variants:
            yield from _leaves(node.block(t), path)
    else:
        yield path, node


# --------------------------------------------------------------------------- schema and validator agree


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name)
def test_bundled_scenarios_validate_against_the_schema(validators, path):
    load_scenario(path)
    assert schema_errors(validators, "scenario", yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_bundled_sweeps_validate_against_the_schema(validators, path):
    assert schema_errors(validators, "sweep", yaml.safe_load(path.read_text())) == []


def _battle():
    return copy.deepcopy(dict(load_scenario(SCENARIOS / "battle_lines_2013.yaml").raw))


def _set(path, value):
    def edit(d):
        node = d
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return edit


def _drop(path):
    def edit(d):
        node = d
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]

    return edit


BAD = [  # (edit of the merged headline scenario, what the validator says)
    (_set(("consumers", "shopping_rate"), "often"), "consumers.shopping_rate: expected a number"),
    (_set(("consumers", "shopping_rate"), 1.5), "1.5 is out of range; allowed: 0 < x <= 1"),
    (_set(("consumers", "count"), 2.5), "consumers.count: expected an integer"),
    (_set(("consumerz",), {}), "unknown key 'consumerz'"),
    (_drop(("name",)), "missing required key 'name'"),
    (_set(("schema",), "marketsim/v9"), "unsupported schema"),
    (_set(("calendar", "start"), "2012-13-01"), "expected a date YYYY-MM-DD"),
    (_set(("retailers", 0, "kind"), "platfrom"), "unknown kind 'platfrom' (did you mean 'platform'?)"),
    (_set(("retailers", 0, "margin"), 0.1), "a platform retailer earns by take_rate, not margin"),
    (_set(("retailers", 1, "attractiveness"), "fit"), "expected a number (utility) or 'calibrate'"),
    (_set(("retailers", 1, "name"), "J D"), "invalid name 'J D'"),
    (_set(("providers", "qq", "network", "k"), 9), "providers.qq.network.k: 9 is odd"),
    (_set(("providers", "qq", "network", "model"), "small_world"), "unknown network model"),
    (_set(("providers", "weibo", "network", "p"), 0.1), "unknown key 'p'"),
    (
        _set(
            ("behaviour", "beta_social"),
            {"value": 1, "range": [0, 2], "prior": "normal", "mean": 1, "sd": 1, "assumption": "x"},
        ),
        "exactly one of 'range",
    ),
    (_set(("behaviour", "beta_social"), {"value": 1, "range": [0, 2]}), "say why the number is uncertain"),
    (_set(("behaviour", "beta_social"), {"prior": "lognormal", "median": 1, "source": "s"}), "a lognormal prior needs"),
    (_set(("friction", "create"), {"value": 1, "range": [0, 2], "assumption": "a", "mean": 1}), "belongs to a prior"),
    (_set(("friction", "creat"), 2), "did you mean 'create'"),
    (_set(("events", 2, "step"), 3), "give exactly one of 'date'"),
    (_set(("events", 2, "type"), "remove_logon"), "did you mean 'remove_login'"),
    (_set(("events", 2, "remove"), True), "unknown key 'remove'"),
    (_set(("events", 0, "effects", 1, "until"), "soon"), "expected a date"),
    (_set(("events", 0, "effects", 1, "audience"), 5), "expected a string"),
    (_set(("events", 0, "effects", 0, "type"), "equity_stake"), "unknown effect type"),
    (_set(("events",), 0), "expected a list of events"),
    (_set(("retailers", 0, "sso_share"), []), "expected a mapping provider -> share"),
    (_set(("observations", 0, "period"), "2013H3"), "a year has halves H1 and H2"),
    (_set(("observations", 0, "shares", "JD"), 22.3), "22.3 is out of range"),
    (_set(("fit_until",), "July"), "expected a date"),
]


@pytest.mark.parametrize("edit,needle", BAD, ids=[n[:40] for _, n in BAD])
def test_typical_bad_files_are_rejected_by_both(validators, edit, needle):
    data = _battle()
    edit(data)
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(copy.deepcopy(data), source="bad.yaml", strict_horizon=True)
    assert needle in str(ei.value) and "\n" not in str(ei.value)
    assert schema_errors(validators, "scenario", data), f"the schema accepts what the validator refuses: {needle}"


def _append(path, k):
    def edit(d):
        node = d
        for p in path:
            node = node[p]
        node.append(copy.deepcopy(node[k]))

    return edit


CONTAINERS = [  # (edit, the whole message): the shape of a container, from its spec node (schema.py)
    (_set(("providers",), {}), "providers: expected a non-empty mapping of provider name -> settings, got a mapping"),
    (
        _set(("providers",), {f"p{i}": {"penetration": 0.1} for i in range(schema.MAX_PROVIDERS + 1)}),
        f"providers: {schema.MAX_PROVIDERS + 1} providers; allowed: at most {schema.MAX_PROVIDERS}",
    ),
    (
        _set(("providers", "qq", "network"), "ws"),
        "providers.qq.network: expected a mapping with 'model' (barabasi_albert, "
        "watts_strogatz, erdos_renyi) and its parameters, got string 'ws'",
    ),
    (_set(("retailers",), []), "retailers: expected a non-empty list of retailers, got a list"),
    (_append(("retailers",), 1), "retailers[3].name: duplicate retailer name 'JD'; give each retailer a unique 'name'"),
    (
        _set(("retailers", 1, "sso_share"), {"wechat": 0.1}),
        "retailers[1].sso_share.wechat: unknown provider 'wechat'; allowed: weibo, qq, sohu, taobao",
    ),
    (_set(("events", 0), {"date": "2013-01-01"}), "events[0]: expected a mapping with 'type' ("),
    (_set(("events", 0, "effects"), {}), "events[0].effects: expected a list of effects, got a mapping"),
    (_set(("observations",), {}), "observations: expected a list of observations, got a mapping"),
    (
        _set(("observations", 0, "shares"), {}),
        "observations[0].shares: expected a non-empty mapping retailer -> share (a fraction), got a mapping",
    ),
    (
        _set(("name",), "-x"),
        "name: invalid scenario name '-x'; allowed: letters, digits, '_', '-', '.' (it names the results folder)",
    ),
    (_set(("schema",), 2), "schema: unsupported schema 2; allowed: marketsim/v1, marketsim/v2"),
]


@pytest.mark.parametrize("edit,message", CONTAINERS, ids=[m[:40] for _, m in CONTAINERS])
def test_container_shapes_are_checked_from_the_spec(edit, message):
    data = _battle()
    edit(data)
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(data, source="bad.yaml", strict_horizon=True)
    assert f"bad.yaml: {message}" in str(ei.value)


#: Validator messages about one field alone: the schema must flag these too. The rest are rules between
#: fields (shares summing to 1, names of the file's own providers, a value inside its own range, ...).
PER_FIELD = (
    "expected ",
    "is out of range",
    "unknown key",
    "invalid name",
    "is odd",
    "unknown kind",
    "unknown network model",
    "unknown event type",
    "unknown effect type",
    "unknown prior",
    "unsupported schema",
    "give exactly one of",
    "exactly one of 'range",
    "say why the number",
    "belongs to a prior",
    "prior has no",
    "prior needs",
    "earns by",
)
VALUES = [
    "x",
    -1,
    1e12,
    None,
    {},
    [],
    True,
    0.5,
    3,
    "2013-01-01",
    "calibrate",
    {"value": 0.5, "range": [0, 1]},
    {"prior": "normal", "mean": 0.3, "sd": 0.1, "source": "s"},
]


def _paths(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, path + (i,))


def test_schema_never_flags_what_the_validator_accepts_and_flags_per_field_problems(validators):
    """Every field of the headline scenario set to each of a dozen values, deleted, or given an unknown key."""
    base = _battle()
    false_alarms, missed, n = [], [], 0
    for path in list(_paths(base))[1:]:
        for v in VALUES + ["<unknown key>", "<deleted>"]:
            data = copy.deepcopy(base)
            node = data
            for p in path[:-1]:
                node = node[p]
            if v == "<deleted>":
                del node[path[-1]]
            elif v == "<unknown key>":
                if not isinstance(node[path[-1]], dict):
                    continue
                node[path[-1]]["bogus_key"] = 1
            else:
                node[path[-1]] = copy.deepcopy(v)
            n += 1
            try:
                parse_scenario(copy.deepcopy(data), source="f.yaml", strict_horizon=True)
                msg = None
            except ScenarioError as e:
                msg = e.problem
            errs = schema_errors(validators, "scenario", data)
            if msg is None and errs:
                false_alarms.append((path, v, errs[0]))
            if msg is not None and not errs and any(k in msg for k in PER_FIELD) and "'conversion'" not in msg:
                missed.append((path, v, msg))
    assert n > 2000
    assert not false_alarms, false_alarms[:5]
    assert not missed, missed[:5]


def test_schema_over_a_base_never_flags_what_the_validator_accepts(validators, tmp_path):
    """A file with base: gives only what differs: the schema requires nothing there, but still checks types."""
    raw = yaml.safe_load((SCENARIOS / "tiny.yaml").read_text())
    raw["base"] = str(SCENARIOS / raw["base"])
    edits = [
        ("consumers", "count", 500),
        ("consumers", "count", "many"),
        ("retailers", 0, "trend", "up"),
        ("retailers", 0, "kind", "platform"),
    ]
    samples = [raw]
    for *path, value in edits:
        d = copy.deepcopy(raw)
        _set(tuple(path), value)(d)
        samples.append(d)
    removal = copy.deepcopy(raw)
    removal["events"] = [{"id": "jd_drops_weibo", "remove": True}]
    partial = copy.deepcopy(raw)
    partial["events"] = [{"id": "jd_drops_weibo", "date": "2013-04-01"}]
    samples += [removal, partial]
    for d in samples:
        f = tmp_path / "over.yaml"
        f.write_text(yaml.safe_dump(d))
        try:
            load_scenario(f)
            ok = True
        except ScenarioError:
            ok = False
        errs = schema_errors(validators, "scenario", d)
        assert not (ok and errs), (d, errs)
        if not ok and d is not samples[0]:
            assert errs or d in (removal, partial)
    assert schema_errors(validators, "scenario", samples[2])  # a count that is not a number


def _distribution(dist):
    def edit(d):
        del d["parameters"][0]["range"]
        d["parameters"][0]["distribution"] = dist

    return edit


def test_bad_sweep_files_are_rejected_by_both(validators, tmp_path):
    from marketsim.experiments.sweep.runner import load_sweep

    good = yaml.safe_load((SCENARIOS / "sweep_weibo_login.yaml").read_text())
    good["base"] = str(SCENARIOS / good["base"])
    for edit, needle in [
        (_set(("replicate",), 2), "unknown key 'replicate'"),
        (_set(("design", "method"), "sobel"), "unknown design 'sobel'"),
        (_set(("parameters", 0, "values"), [1, 2]), "give exactly one of"),
        (_set(("batch_runs",), 0), "0 is out of range"),
        (_distribution({"type": "normal", "mean": 1, "sd": 1, "lo": 0}), "unknown key 'lo'"),
        (_distribution({"type": "normal", "mean": 1}), "a normal distribution needs mean, sd"),
    ]:
        d = copy.deepcopy(good)
        edit(d)
        f = tmp_path / "s.yaml"
        f.write_text(yaml.safe_dump(d))
        with pytest.raises(ScenarioError, match=needle):
            load_sweep(f)
        assert schema_errors(validators, "sweep", d), needle


# --------------------------------------------------------------------------- validate: a file, with its story


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name)
def test_validate_output_is_a_file_that_loads_back_to_the_same_scenario(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = path.relative_to(ROOT)
    sc = load_scenario(path)
    text = describe.render(sc, given=str(path), prov=describe.provenance(scenario_files(path)))
    again = parse_text(text, "resolved.yaml")
    assert again == sc and again.digest() == sc.digest()
    assert "base:" not in text.replace("# ", "")  # nothing left to merge
    assert max(len(line) for line in text.splitlines() if line.startswith("#")) <= 80


def test_validate_on_the_command_line_round_trips(tmp_path):
    r = marketsim("validate", SCENARIOS / "battle_lines_2013.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "resolved.yaml"
    out.write_text(r.stdout)
    r2 = marketsim("validate", out, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    digest = load_scenario(SCENARIOS / "battle_lines_2013.yaml").digest()[:12]
    for out in (r.stdout, r2.stdout):
        head = " ".join(line.lstrip("# ").strip() for line in out.splitlines()[:3])
        assert f"valid (battle_lines_2013, schema marketsim/v2, digest {digest})" in head


def _line(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


def test_validate_says_which_file_sets_what(tmp_path):
    tiny, base = SCENARIOS / "tiny.yaml", SCENARIOS / "baseline_2013q2.yaml"
    text = describe.render(load_scenario(tiny), given="tiny", prov=describe.provenance(scenario_files(tiny)))
    flat = " ".join(line.lstrip("# ").strip() for line in text.splitlines())
    assert (
        f"calendar: {tiny}:{_line(tiny, 'calendar:')} (start, steps, warmup) over {base}:{_line(base, 'calendar:')}"
        in flat
    )
    assert f"market: {base}:{_line(base, 'market:')}" in flat
    assert f"JD: {tiny}:{_line(tiny, '  - {name: JD')} (trend, target_share) over" in flat
    battle, stake = SCENARIOS / "battle_lines_2013.yaml", SCENARIOS / "alibaba_weibo_stake.yaml"
    text = describe.render(load_scenario(battle), given="b", prov=describe.provenance(scenario_files(battle)))
    flat = " ".join(line.lstrip("# ").strip() for line in text.splitlines())
    assert f"jd_drops_weibo: {battle}:{_line(battle, '  - id: jd_drops_weibo')}" in flat
    assert f"alibaba_buys_weibo_stake: {stake}:{_line(stake, '  - id: alibaba_buys_weibo_stake')}" in flat
    assert f"Built from: {base} <- {stake} <- {battle}" in flat
    # a removal is reported where it happens
    child = tmp_path / "child.yaml"
    child.write_text(
        f"schema: marketsim/v2\nbase: {battle}\nname: child\nevents:\n  - {{id: jd_drops_weibo, remove: true}}\n"
    )
    text = describe.render(load_scenario(child), given="c", prov=describe.provenance(scenario_files(child)))
    flat = " ".join(line.lstrip("# ").strip() for line in text.splitlines())
    assert f"jd_drops_weibo: removed by {child}:5" in flat and "- id: jd_drops_weibo" not in text


def test_validate_lists_every_uncertain_parameter_with_its_range_and_reason():
    sc = load_scenario(SCENARIOS / "battle_lines_2013.yaml")
    text = describe.render(sc, given="b", prov=None)
    flat = " ".join(line.lstrip("# ").strip() for line in text.splitlines())
    assert len(sc.uncertain) >= 6
    for u in sc.uncertain:
        assert f"{u.path}: {u.value:g}, {u.describe()}; {u.reason}" in flat


def test_utilities_in_business_terms_follow_the_logit():
    """The translated change equals the change of an explicit multinomial logit over no-purchase and retailers."""
    for p in (0.01, 0.1026, 0.3036, 0.8):
        for d in (-1.5, -0.2, 0.1, 0.5, 2.0):
            p0 = 1 - p - 0.05  # another retailer holds 5%
            v = np.log(np.array([p0, p, 0.05]) / p0)  # utilities with no purchase at 0
            v2 = v.copy()
            v2[1] += d
            q = np.exp(v2) / np.exp(v2).sum()
            assert math.isclose(describe.choice_change(p, d), q[1] / p - 1, rel_tol=1e-12)
    sc = load_scenario(SCENARIOS / "battle_lines_2013.yaml")
    shop = describe.typical_shopper(sc)
    assert shop.conversion == 0.6 and shop.basis == "iresearch 2013Q2 shares"
    assert shop.shares == pytest.approx({"Tmall": 0.506, "JD": 0.171, "Other": 0.323})
    _, effects = describe.utility_effects(sc)
    promo = next(e for e in effects if e.path == "events.alibaba_buys_weibo_stake.effects.1.utility")
    assert "Tmall by +7.1% (+0.0% .. +38% over 0 .. 0.5)" in promo.text  # e^0.1 / (1 + 0.3036 (e^0.1 - 1)) - 1
    create = next(e for e in effects if e.path == "friction.create")
    assert "JD -76%" in create.text  # d = -1.5 at p = 0.1026


def test_typical_shopper_without_observations_or_conversion():
    assert describe.typical_shopper(load_scenario(SCENARIOS / "tiny.yaml")).basis == "target shares"
    fixed = parse_text(f"""
schema: marketsim/v2
name: fixed
calendar: {{start: 2020-01-05, steps: 4}}
market: {{size: 1000}}
consumers: {{count: 100, shopping_rate: 0.5, basket: {{mean: 10}}}}
providers: {{qq: {{penetration: 0.5}}}}
retailers:
  - {{name: A, kind: direct, attractiveness: 0.0, initial_share: 0.5}}
  - {{name: B, kind: direct, attractiveness: {math.log(3)}, initial_share: 0.5}}
""")
    shop = describe.typical_shopper(fixed)
    assert shop.conversion == pytest.approx(4 / 5) and shop.shares == pytest.approx({"A": 0.25, "B": 0.75})


# --------------------------------------------------------------------------- the wrong kind of file


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["run", SCENARIOS / "sweep_weibo_login.yaml"],
            "this is a sweep file (marketsim-sweep/v1), not a scenario file; use it with: marketsim sweep",
        ),
        (["validate", SCENARIOS / "sweep_weibo_login.yaml"], "not a scenario file; use it with: marketsim sweep"),
        (
            ["sweep", SCENARIOS / "tiny.yaml"],
            "this is a scenario file (marketsim/v2), not a sweep file; use it with: marketsim run",
        ),
    ],
)
def test_a_file_of_the_other_kind_names_the_command_that_takes_it(tmp_path, args, needle):
    r = marketsim(*args, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert needle in r.stderr and (":3: schema:" in r.stderr or ":4: schema:" in r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "unknown key" not in r.stderr


# --------------------------------------------------------------------------- marketsim schema


def test_schema_command_prints_and_writes(tmp_path):
    r = marketsim("schema", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == (ROOT / "schema" / "scenario.schema.json").read_text()
    r = marketsim("schema", "sweep", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["title"].startswith("marketsim sweep file")
    (tmp_path / "docs").mkdir()
    stale = (ROOT / "docs" / "scenarios.md").read_text().replace("`consumers.turnover`", "`consumers.churn`")
    (tmp_path / "docs" / "scenarios.md").write_text(stale)
    r = marketsim("schema", "--write", "--root", tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "docs" / "scenarios.md").read_text() == (ROOT / "docs" / "scenarios.md").read_text()
    assert (tmp_path / "schema" / "sweep.schema.json").read_text() == (
        ROOT / "schema" / "sweep.schema.json"
    ).read_text()
    r = marketsim("schema", "--write", "--root", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "docs/scenarios.md: not found" in r.stderr
