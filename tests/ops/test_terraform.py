"""Offline checks of ops/terraform: nothing here talks to AWS.

- ``terraform init`` against the local provider mirror (/opt/tf-plugins, hashicorp/aws 5.100.0)
  through a CLI config in a temp dir; ``fmt -check``; ``validate``;
- ``terraform plan`` with fake credentials and the provider's skip flags (a test-only
  ``*_override.tf``), then ``terraform show -json`` asserted here: three hosts, the bucket and
  its lifecycle, each host's IAM policy (actions and prefixes), security groups;
- checkov (pinned, in its own virtualenv ``.venv-checkov/``, created once and reused);
- the user data exactly as Terraform renders it, run in a temp dir with fake ``dnf``,
  ``systemctl`` and ``aws`` first on PATH: it installs the project from this checkout's HEAD,
  writes config.toml and the secrets file, and what it installed runs
  (``python -m collector --help``, the unit's ExecStartPre/ExecStart under supervisord).

The module is copied to a temp dir so ``.terraform`` and state never land in the repository.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import getpass
import gzip
import json
import os
import resource
import shlex
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "ops" / "terraform"
PLUGIN_MIRROR = Path("/opt/tf-plugins")
AWS_PROVIDER_DIR = (
    PLUGIN_MIRROR / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64"
)
PROVIDER_ALIASES = ("bucket", "eu_west_1", "us_east_2", "ap_northeast_1")
REGIONS = ("eu-west-1", "us-east-2", "ap-northeast-1")
AMI_IDS = {r: f"ami-0000000000000000{i}" for i, r in enumerate(REGIONS, 1)}
BUCKET = "test-l3collector-data"
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = REPO / ".venv-checkov"
# Each skip in the .tf files is justified in its #checkov:skip comment; a new one must be
# added here deliberately.
CHECKOV_SKIPS = {"CKV_AWS_18", "CKV_AWS_144", "CKV_AWS_145", "CKV2_AWS_62"}

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Terraform:
    """The terraform CLI bound to a copy of the module and an offline CLI config."""

    exe: str
    workdir: Path  # the copy of ops/terraform
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.exe, *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"terraform {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def plan_json(self, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        varfile = self.workdir / f"{name}.tfvars.json"
        varfile.write_text(json.dumps(variables))
        planfile = self.workdir / f"{name}.tfplan"
        self.run("plan", "-input=false", "-lock=false", f"-var-file={varfile}", f"-out={planfile}")
        shown = self.run("show", "-json", str(planfile))
        plan: dict[str, Any] = json.loads(shown.stdout)
        return plan


@functools.cache
def _head_commit() -> str:
    """The commit the hosts deploy in these tests (fixed once: others may commit meanwhile)."""
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def _base_vars(**extra: Any) -> dict[str, Any]:
    variables: dict[str, Any] = {
        "bucket_name": BUCKET,
        "git_url": f"file://{REPO}",
        "git_ref": _head_commit(),
        "ami_ids": AMI_IDS,
    }
    variables.update(extra)
    return variables


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    exe = shutil.which("terraform")
    if exe is None:
        pytest.fail(
            "terraform CLI not found on PATH (the machine image ships it in /usr/local/bin)"
        )
    if not any(AWS_PROVIDER_DIR.glob("terraform-provider-aws_*")):
        pytest.fail(
            f"provider mirror missing: no hashicorp/aws 5.100.0 under {AWS_PROVIDER_DIR} "
            "(terraform init runs offline against that filesystem mirror)"
        )
    root = tmp_path_factory.mktemp("tf")
    # The module reads ../../config.toml and ../../supervisord.conf (wheel mode).
    workdir = root / "ops" / "terraform"
    shutil.copytree(
        TF_DIR,
        workdir,
        ignore=shutil.ignore_patterns(
            ".terraform", "*.tfstate*", ".terraform.lock.hcl", "terraform.tfvars", "*.tfplan"
        ),
    )
    for name in ("config.toml", "supervisord.conf"):
        shutil.copy2(REPO / name, root / name)
    cli_config = root / "cli.tfrc"
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{PLUGIN_MIRROR}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        "}\n"
    )
    # Test-only override: fake keys and the skip flags, so plan makes no AWS call.
    (workdir / "offline_override.tf").write_text(
        "\n".join(
            f'provider "aws" {{\n'
            f'  alias                       = "{alias}"\n'
            f'  access_key                  = "AKIAOFFLINETESTKEY00"\n'
            f'  secret_key                  = "offline-test-secret"\n'
            f"  skip_credentials_validation = true\n"
            f"  skip_requesting_account_id  = true\n"
            f"  skip_metadata_api_check     = true\n"
            f"  skip_region_validation      = true\n"
            f"}}\n"
            for alias in PROVIDER_ALIASES
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_")) or k == "AWS_CA_BUNDLE"
    }
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_DATA_DIR=str(root / "tfdata"),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    t = Terraform(exe=exe, workdir=workdir, env=env)
    init = t.run("init", "-input=false", "-backend=false")
    assert "Installing hashicorp/aws v5.100.0" in init.stdout, init.stdout
    return t


@pytest.fixture(scope="module")
def plan(tf: Terraform) -> dict[str, Any]:
    return tf.plan_json("default", _base_vars())


def _changes(plan: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    """address -> planned 'after' values of every resource of one type (all creates)."""
    out = {}
    for rc in plan["resource_changes"]:
        if rc["type"] == rtype and rc["mode"] == "managed":
            assert rc["change"]["actions"] == ["create"], rc["address"]
            out[rc["address"]] = rc["change"]["after"]
    return out


def _module_of(address: str) -> str:
    return address.split(".")[1]  # module.host_eu_west_1[0].aws_x.y -> host_eu_west_1[0]


def _region_of(address: str) -> str:
    return _module_of(address).removeprefix("host_").split("[")[0].replace("_", "-")


def _user_data(after: dict[str, Any]) -> str:
    return gzip.decompress(base64.b64decode(after["user_data_base64"])).decode()


# --- init / fmt / validate ------------------------------------------------------------------


def test_fmt_check() -> None:
    exe = shutil.which("terraform")
    assert exe is not None
    proc = subprocess.run(
        [exe, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"},
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


def test_init_uses_mirror_and_validate(tf: Terraform) -> None:
    lock = (tf.workdir / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    assert 'version     = "5.100.0"' in lock
    result = json.loads(tf.run("validate", "-json").stdout)
    assert result["valid"] is True, result
    assert result["error_count"] == 0
    assert result["warning_count"] == 0, result["diagnostics"]


def test_unknown_region_is_rejected(tf: Terraform) -> None:
    varfile = tf.workdir / "bad.tfvars.json"
    varfile.write_text(json.dumps(_base_vars(regions=["us-west-1"])))
    proc = tf.run("plan", "-input=false", "-lock=false", f"-var-file={varfile}", check=False)
    assert proc.returncode == 1
    assert "regions must be a non-empty subset of eu-west-1, us-east-2," in proc.stderr


# --- the plan ---------------------------------------------------------------------------------


def test_plan_three_hosts(plan: dict[str, Any]) -> None:
    instances = _changes(plan, "aws_instance")
    assert sorted(_region_of(a) for a in instances) == sorted(REGIONS)
    for address, inst in instances.items():
        region = _region_of(address)
        assert inst["ami"] == AMI_IDS[region]
        assert inst["instance_type"] == "t3.small"
        assert inst["iam_instance_profile"] == f"l3collector-{region}"
        assert inst["monitoring"] is True
        assert inst["metadata_options"] == [
            {
                "http_endpoint": "enabled",
                "http_protocol_ipv6": "disabled",
                "http_put_response_hop_limit": 1,
                "http_tokens": "required",
                "instance_metadata_tags": "disabled",
            }
        ]
        # 16 GB system + 15 GB/day x (3 retention days + 2 days backlog)
        assert inst["root_block_device"] == [
            {
                "delete_on_termination": True,
                "encrypted": True,
                "tags": None,
                "volume_size": 91,
                "volume_type": "gp3",
            }
        ]
        assert inst["tags_all"] == {
            "Name": f"l3collector-{region}",
            "Project": "l3collector",
            "ManagedBy": "terraform",
        }
        script = _user_data(inst)
        assert script.startswith("#!/bin/bash\n")
        assert f"DEFAULT_HOST_ID='{region}'\n" in script
        assert f"DEFAULT_REGION='{region}'\n" in script
        assert f"DEFAULT_BUCKET='{BUCKET}'\n" in script
        assert "DEFAULT_SSM_PARAMETER_PATH='/l3collector'\n" in script
        assert "CONFIG_TOML_B64=''\n" in script  # git mode: the config comes with the ref

    outputs = plan["output_changes"]
    assert outputs["bucket_name"]["after"] == BUCKET
    hosts = outputs["hosts"]["after"]
    assert sorted(hosts) == sorted(REGIONS)
    for region in REGIONS:
        assert hosts[region]["region"] == region
        assert hosts[region]["s3_prefix"] == f"s3://{BUCKET}/collector/{region}/"
        unknown = outputs["hosts"]["after_unknown"][region]
        for key in ("instance_id", "ssm_session", "ssm_supervisorctl_status", "ssm_deploy"):
            assert unknown[key] is True  # known after apply (they contain the instance id)
    assert set(outputs["instance_ids"]["after_unknown"]) == set(REGIONS)


def test_plan_security_groups_have_no_inbound(plan: dict[str, Any]) -> None:
    assert _changes(plan, "aws_vpc_security_group_ingress_rule") == {}
    groups = _changes(plan, "aws_security_group")
    assert sorted(_region_of(a) for a in groups) == sorted(REGIONS)
    for address, sg in groups.items():
        assert sg["name"] == f"l3collector-{_region_of(address)}"
        assert "vpc_id" not in sg  # unknown until apply: the default VPC (no `network` entry)
    egress = _changes(plan, "aws_vpc_security_group_egress_rule")
    by_region: dict[str, set[tuple[str, int, int, str]]] = {}
    for address, rule in egress.items():
        by_region.setdefault(_region_of(address), set()).add(
            (rule["ip_protocol"], rule["from_port"], rule["to_port"], rule["cidr_ipv4"])
        )
    expected = {("tcp", p, p, "0.0.0.0/0") for p in (80, 443, 9443)}
    assert by_region == {r: expected for r in REGIONS}


def test_plan_bucket_and_lifecycle(plan: dict[str, Any]) -> None:
    region = plan["configuration"]["provider_config"]["aws.bucket"]["expressions"]["region"]
    assert region == {"references": ["var.bucket_region"]}
    assert plan["variables"]["bucket_region"]["value"] == "eu-west-1"
    buckets = _changes(plan, "aws_s3_bucket")
    assert list(buckets) == ["aws_s3_bucket.data"]
    assert buckets["aws_s3_bucket.data"]["bucket"] == BUCKET
    assert buckets["aws_s3_bucket.data"]["force_destroy"] is False

    (versioning,) = _changes(plan, "aws_s3_bucket_versioning").values()
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    (sse,) = _changes(plan, "aws_s3_bucket_server_side_encryption_configuration").values()
    assert sse["rule"][0]["apply_server_side_encryption_by_default"] == [
        {"kms_master_key_id": "", "sse_algorithm": "AES256"}
    ]
    (pab,) = _changes(plan, "aws_s3_bucket_public_access_block").values()
    assert {k: pab[k] for k in pab if k != "bucket"} == {
        "block_public_acls": True,
        "block_public_policy": True,
        "ignore_public_acls": True,
        "restrict_public_buckets": True,
    }
    (ownership,) = _changes(plan, "aws_s3_bucket_ownership_controls").values()
    assert ownership["rule"] == [{"object_ownership": "BucketOwnerEnforced"}]

    (lifecycle,) = _changes(plan, "aws_s3_bucket_lifecycle_configuration").values()
    (rule,) = lifecycle["rule"]
    assert rule["id"] == "archive"
    assert rule["status"] == "Enabled"
    assert rule["transition"] == [{"date": None, "days": 30, "storage_class": "GLACIER"}]
    assert rule["noncurrent_version_transition"] == [
        {"newer_noncurrent_versions": None, "noncurrent_days": 30, "storage_class": "GLACIER"}
    ]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 1}]
    assert rule["expiration"] == []

    (policy,) = _changes(plan, "aws_s3_bucket_policy").values()
    assert json.loads(policy["policy"])["Statement"] == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{BUCKET}/*", f"arn:aws:s3:::{BUCKET}"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def _hosts_only(changes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The resources of the host modules (the dataset module has its own role)."""
    return {a: v for a, v in changes.items() if a.startswith("module.host_")}


def test_plan_iam_least_privilege(plan: dict[str, Any]) -> None:
    all_policies = _hosts_only(_changes(plan, "aws_iam_role_policy"))
    policies = {a: p for a, p in all_policies.items() if p["name"] == "collector-host"}
    assert sorted(_region_of(a) for a in policies) == sorted(REGIONS)
    # the dataset builder's policy goes to the one designated host only (the first)
    builders = [a for a, p in all_policies.items() if p["name"] == "dataset-builder"]
    assert [_region_of(a) for a in builders] == ["eu-west-1"]
    for address, pol in policies.items():
        host = _region_of(address)
        prefix = f"collector/{host}"
        statements = json.loads(pol["policy"])["Statement"]
        assert statements == [
            {
                "Sid": "OwnPrefixObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": f"arn:aws:s3:::{BUCKET}/{prefix}/*",
            },
            {
                "Sid": "ListOwnPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{BUCKET}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}},
            },
            {
                "Sid": "FleetUniverse",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": f"arn:aws:s3:::{BUCKET}/collector/universe.json",
            },
            {
                "Sid": "ReadFleetStatus",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/collector/*/_status/*",
            },
            {
                "Sid": "ReadLifecycle",
                "Effect": "Allow",
                "Action": "s3:GetLifecycleConfiguration",
                "Resource": f"arn:aws:s3:::{BUCKET}",
            },
            {
                "Sid": "ReadSecrets",
                "Effect": "Allow",
                "Action": ["ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"],
                "Resource": [
                    "arn:aws:ssm:eu-west-1:*:parameter/l3collector/*",
                    "arn:aws:ssm:eu-west-1:*:parameter/l3collector",
                ],
            },
        ]
        for st in statements:  # no wildcard action, no Allow on every resource
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert all("*" not in a for a in actions), st
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            assert "*" not in resources, st

    roles = _hosts_only(_changes(plan, "aws_iam_role"))
    for address, role in roles.items():
        assert role["name"] == f"l3collector-{_region_of(address)}"
        assume = json.loads(role["assume_role_policy"])["Statement"]
        assert assume == [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "ec2.amazonaws.com"},
            }
        ]
    attachments = _hosts_only(_changes(plan, "aws_iam_role_policy_attachment"))
    assert sorted(a["policy_arn"] for a in attachments.values()) == [
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    ] * len(REGIONS)


def test_plan_variant_one_region_deep_archive_ssh_wheel(tf: Terraform) -> None:
    plan = tf.plan_json(
        "variant",
        _base_vars(
            regions=["us-east-2"],
            glacier_storage_class="DEEP_ARCHIVE",
            glacier_transition_days=90,
            ssh_cidr_blocks=["203.0.113.0/24"],
            wheel_url="https://artifacts.example/l3collector-0.1.0-py3-none-any.whl",
            secrets_region="us-east-1",
            ami_ids={"us-east-2": "ami-0123456789abcdef0"},
        ),
    )
    instances = _changes(plan, "aws_instance")
    assert list(instances) == ["module.host_us_east_2[0].aws_instance.host"]
    (lifecycle,) = _changes(plan, "aws_s3_bucket_lifecycle_configuration").values()
    assert lifecycle["rule"][0]["transition"] == [
        {"date": None, "days": 90, "storage_class": "DEEP_ARCHIVE"}
    ]
    ingress = list(_changes(plan, "aws_vpc_security_group_ingress_rule").values())
    assert [(r["from_port"], r["to_port"], r["cidr_ipv4"]) for r in ingress] == [
        (22, 22, "203.0.113.0/24")
    ]
    script = _user_data(instances["module.host_us_east_2[0].aws_instance.host"])
    assert "DEFAULT_WHEEL_URL='https://artifacts.example/l3collector-0.1.0-py3-none-any.whl'" in (
        script
    )
    assert "DEFAULT_SECRETS_REGION='us-east-1'\n" in script
    # wheel mode embeds this checkout's config files (the wheel carries neither)
    embedded = {}
    for line in script.splitlines():
        for var in ("CONFIG_TOML_B64", "SUPERVISORD_CONF_B64"):
            if line.startswith(f"{var}='"):
                embedded[var] = base64.b64decode(line.split("'")[1]).decode()
    assert embedded == {
        "CONFIG_TOML_B64": (REPO / "config.toml").read_text(),
        "SUPERVISORD_CONF_B64": (REPO / "supervisord.conf").read_text(),
    }
    # one region: its one host is also the dataset builder (two inline policies)
    policies = {p["name"]: p for p in _hosts_only(_changes(plan, "aws_iam_role_policy")).values()}
    assert sorted(policies) == ["collector-host", "dataset-builder"]
    statements = json.loads(policies["collector-host"]["policy"])["Statement"]
    (secrets,) = [st for st in statements if st["Sid"] == "ReadSecrets"]
    assert secrets["Resource"] == [
        "arn:aws:ssm:us-east-1:*:parameter/l3collector/*",
        "arn:aws:ssm:us-east-1:*:parameter/l3collector",
    ]


def test_plan_three_regions_two_hosts_each(tf: Terraform) -> None:
    """hosts_per_region = 2: six hosts <region>-1/-2, every one's config lists all six with
    replicas, and only the designated host gets the dataset builder's policy and job."""
    plan = tf.plan_json(
        "two-per-region",
        _base_vars(hosts_per_region=2, replicas=2, dataset_host="ap-northeast-1-2"),
    )
    instances = _changes(plan, "aws_instance")
    ids = sorted(f"{r}-{i}" for r in REGIONS for i in (1, 2))
    assert (
        sorted(i["tags_all"]["Name"].removeprefix("l3collector-") for i in instances.values())
        == ids
    )
    fleet = [{"id": f"{r}-{i}", "region": r} for r in REGIONS for i in (1, 2)]
    for inst in instances.values():
        script = _user_data(inst)
        (line,) = [ln for ln in script.splitlines() if ln.startswith("DEFAULT_FLEET_HOSTS='")]
        assert json.loads(line.split("'")[1]) == fleet
        assert "DEFAULT_REPLICAS='2'\n" in script
        host = inst["tags_all"]["Name"].removeprefix("l3collector-")
        assert f"DEFAULT_HOST_ID='{host}'\n" in script
        job = "1" if host == "ap-northeast-1-2" else ""
        assert f"DEFAULT_DATASET_JOB='{job}'\n" in script
    builders = [
        a
        for a, p in _hosts_only(_changes(plan, "aws_iam_role_policy")).items()
        if p["name"] == "dataset-builder"
    ]
    assert builders == ["module.host_ap_northeast_1[1].aws_iam_role_policy.dataset[0]"]
    assert sorted(plan["output_changes"]["hosts"]["after"]) == ids


def test_a_dataset_host_outside_the_fleet_is_refused(tf: Terraform) -> None:
    varfile = tf.workdir / "bad-dataset-host.tfvars.json"
    varfile.write_text(json.dumps(_base_vars(dataset_host="nowhere-1")))
    proc = tf.run("plan", "-input=false", "-lock=false", f"-var-file={varfile}", check=False)
    assert (
        "dataset_host must be the host_id of one of the fleet's hosts" in proc.stderr + proc.stdout
    )


def test_plan_dataset_tables_workgroup_and_builder_role(plan: dict[str, Any]) -> None:
    """Glue tables with partition projection over the dataset prefix (no crawler), an Athena
    workgroup with its results location, and a builder role that reads every host prefix
    and writes only the dataset prefix."""
    assert _changes(plan, "aws_glue_crawler") == {}
    (db,) = _changes(plan, "aws_glue_catalog_database").values()
    assert db["name"] == "l3collector"
    tables = {t["name"]: t for t in _changes(plan, "aws_glue_catalog_table").values()}
    assert sorted(tables) == ["book", "completeness", "l3", "trade"]
    from collector.model import COLUMNS

    for data_type in ("trade", "book", "l3"):
        t = tables[data_type]
        params = t["parameters"]
        root = f"s3://{BUCKET}/dataset/{data_type}"
        assert params["projection.enabled"] == "true"
        assert params["projection.exchange.values"] == "binance,coinbase,bitstamp,bitfinex"
        assert params["projection.symbol.type"] == "injected"
        assert params["projection.date.type"] == "date"
        assert params["storage.location.template"] == (
            root + "/exchange=${exchange}/symbol=${symbol}/date=${date}/"
        )
        assert [k["name"] for k in t["partition_keys"]] == ["exchange", "symbol", "date"]
        (sd,) = t["storage_descriptor"]
        assert sd["location"] == root + "/"
        names = [c["name"] for c in sd["columns"]]
        assert names == [c for c in COLUMNS[data_type] if c != "symbol"] + ["source"]
        types = {c["name"]: c["type"] for c in sd["columns"]}
        assert types["local_time"] == "bigint"
        assert all(types[c] == "string" for c in ("price",) if c in types)
    comp = tables["completeness"]
    assert comp["parameters"]["storage.location.template"] == (
        f"s3://{BUCKET}/dataset/completeness/date=${{date}}/"
    )
    (wg,) = _changes(plan, "aws_athena_workgroup").values()
    (cfg,) = wg["configuration"]
    assert cfg["enforce_workgroup_configuration"] is True
    assert cfg["result_configuration"][0]["output_location"] == (f"s3://{BUCKET}/athena-results/")
    (policy,) = [
        p
        for a, p in _changes(plan, "aws_iam_role_policy").items()
        if a.startswith("module.dataset")
    ]
    statements = json.loads(policy["policy"])["Statement"]
    assert statements == [
        {
            "Sid": "ReadHostCopies",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/collector/*",
        },
        {
            "Sid": "ListHostsAndDataset",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{BUCKET}",
            "Condition": {
                "StringLike": {"s3:prefix": ["collector/", "collector/*", "dataset/", "dataset/*"]}
            },
        },
        {
            "Sid": "WriteDataset",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": f"arn:aws:s3:::{BUCKET}/dataset/*",
        },
    ]
    writes = [st for st in statements if "s3:PutObject" in st["Action"]]
    assert [w["Resource"] for w in writes] == [f"arn:aws:s3:::{BUCKET}/dataset/*"]


# --- checkov ------------------------------------------------------------------------------------


def _checkov() -> Path:
    """checkov in its own virtualenv (it pins its own boto3), installed once per version."""
    exe = CHECKOV_VENV / "bin" / "checkov"
    stamp = CHECKOV_VENV / f".installed-checkov-{CHECKOV_VERSION}"
    CHECKOV_VENV.mkdir(exist_ok=True)
    with open(CHECKOV_VENV / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and exe.exists():
            return exe
        for cmd in (
            [sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)],
            [
                str(CHECKOV_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"checkov=={CHECKOV_VERSION}",
            ],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                pytest.fail(f"installing checkov failed: {cmd}\n{proc.stdout}\n{proc.stderr}")
        stamp.touch()
    return exe


def test_checkov_has_no_failed_checks(tmp_path: Path) -> None:
    exe = _checkov()
    report = tmp_path / "checkov"
    proc = subprocess.run(
        [
            str(exe),
            "--directory",
            str(TF_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
            "--output-file-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_PROGRESS": "1"},
    )
    results_file = report / "results_json.json"
    assert results_file.exists(), f"checkov wrote no report:\n{proc.stdout}\n{proc.stderr}"
    results = json.loads(results_file.read_text())["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    assert proc.returncode == 0, proc.stderr
    assert len(results["passed_checks"]) > 100
    skipped = results["skipped_checks"]
    assert {c["check_id"] for c in skipped} == CHECKOV_SKIPS
    for c in skipped:  # every skip carries its reason
        assert len(c["check_result"]["suppress_comment"]) > 40, c["check_id"]


# --- the user data, run for real ----------------------------------------------------------

FAKE_PARAMETERS = {
    "Parameters": [
        {"Name": "/l3collector/COINBASE_API_KEY", "Type": "SecureString", "Value": "ck-123"},
        {"Name": "/l3collector/COINBASE_API_SECRET", "Type": "SecureString", "Value": 'a"b\\c'},
        {
            "Name": "/l3collector/alerts/SLACK_WEBHOOK_URL",
            "Type": "SecureString",
            "Value": "https://hooks.example/T0/B0/$x`y`",
        },
    ]
}
SECRETS_ENV = (
    'COINBASE_API_KEY="ck-123"\n'
    'COINBASE_API_SECRET="a\\"b\\\\c"\n'
    'SLACK_WEBHOOK_URL="https://hooks.example/T0/B0/\\$x\\`y\\`"\n'
)


def _fake_commands(bindir: Path, logdir: Path, aws_response: Path) -> None:
    bindir.mkdir()
    for name in ("dnf", "systemctl", "aws"):
        body = f'#!/bin/bash\nprintf "%s\\n" "$*" >>{shlex.quote(str(logdir / name))}.log\n'
        if name == "aws":
            body += f"cat {shlex.quote(str(aws_response))}\n"
        (bindir / name).write_text(body)
        (bindir / name).chmod(0o755)


def _systemd_environment_file(path: Path) -> dict[str, str]:
    """Parse NAME="value" lines with systemd's backslash escapes inside double quotes."""
    env = {}
    for line in path.read_text().splitlines():
        name, _, quoted = line.partition("=")
        assert quoted.startswith('"'), line
        assert quoted.endswith('"'), line
        value, chars = [], iter(quoted[1:-1])
        for ch in chars:
            value.append(next(chars) if ch == "\\" else ch)
        env[name] = "".join(value)
    return env


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # supervisord's unix socket path must stay under 108 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="ud-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_user_data_deploys_and_starts(plan: dict[str, Any], short_tmp: Path) -> None:
    (inst,) = [
        a for addr, a in _changes(plan, "aws_instance").items() if _region_of(addr) == "eu-west-1"
    ]
    script = short_tmp / "user-data.sh"
    script.write_text(_user_data(inst))  # exactly what cloud-init would run
    logs = short_tmp / "log"
    logs.mkdir()
    aws_response = short_tmp / "parameters.json"
    aws_response.write_text(json.dumps(FAKE_PARAMETERS))
    _fake_commands(short_tmp / "bin", logs, aws_response)
    prefix, etc, units, sbin = (short_tmp / p for p in ("opt/collector", "etc", "systemd", "sbin"))
    venv = prefix / ".venv"

    # Pre-create the virtualenv (the script keeps an existing one, as on a re-deploy) and
    # let it see this test environment's packages, so pip finds the dependencies installed
    # and only builds the project itself: seconds instead of downloading every dependency.
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    (venv / "lib" / "python3.11" / "site-packages" / "_test_deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV"))},
        "PATH": f"{short_tmp / 'bin'}:{os.environ['PATH']}",
        "PREFIX": str(prefix),
        "ETC_DIR": str(etc),
        "SYSTEMD_DIR": str(units),
        "SBIN_DIR": str(sbin),
        "SERVICE_USER": getpass.getuser(),
        "PYTHON": base_python,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }
    proc = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"user data failed:\n{proc.stdout}\n{proc.stderr}"

    # packages, secrets and systemd went through the (fake) system tools
    assert (logs / "dnf.log").read_text() == (
        "install -y -q git python3.11 python3.11-pip util-linux\n"
    )
    assert (logs / "aws.log").read_text() == (
        "ssm get-parameters-by-path --region eu-west-1 --path /l3collector"
        " --recursive --with-decryption --output json\n"
    )
    assert (logs / "systemctl.log").read_text() == (
        "daemon-reload\nenable collector.service\nrestart collector.service\n"
    )

    # the checkout is this repository's HEAD
    head = subprocess.run(
        ["git", "-C", str(prefix), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert head.stdout.strip() == _head_commit()

    # config.toml: the committed file with this host's values, nothing else changed
    committed = tomllib.loads(
        subprocess.run(
            ["git", "-C", str(REPO), "show", f"{_head_commit()}:config.toml"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    )
    written = tomllib.loads((prefix / "config.toml").read_text())
    expected = json.loads(json.dumps(committed))
    expected["host_id"] = "eu-west-1"
    expected["sync"].update(
        bucket=BUCKET, prefix="collector", region="eu-west-1", retention_days=3.0
    )
    # the whole fleet, and the dataset job on the designated host (the first: this one)
    expected["fleet"].update(
        hosts=[{"id": r, "region": r} for r in REGIONS],
        replicas=2,
        periodic=["secmaster", "qa", "sync", "dataset"],
    )
    expected["secmaster"]["universe"] = "s3"  # the fleet's one universe document
    assert written == expected

    # secrets: root-only file, exact content, nothing of them in the user data
    secrets = etc / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert secrets.read_text() == SECRETS_ENV
    assert "ck-123" not in script.read_text()
    assert sorted(p.name for p in etc.iterdir()) == ["deploy.lock", "secrets.env"]

    # the script installed itself for rollouts
    deploy = sbin / "collector-deploy"
    assert deploy.read_text() == script.read_text()
    assert stat.S_IMODE(deploy.stat().st_mode) == 0o755

    # the systemd unit
    unit_lines = (units / "collector.service").read_text().splitlines()
    directives = [ln for ln in unit_lines if "=" in ln and not ln.startswith("#")]
    assert f"ExecStartPre=+{sbin}/collector-secrets" in directives
    assert f"ExecStartPre={venv}/bin/python -m ops.fleet render" in directives
    assert f"EnvironmentFile={etc}/secrets.env" in directives
    assert "Restart=always" in directives
    assert f"User={getpass.getuser()}" in directives
    assert f"WorkingDirectory={prefix}" in directives
    (exec_start,) = [d.removeprefix("ExecStart=") for d in directives if d.startswith("ExecStart=")]
    assert exec_start == f"{venv}/bin/python -m ops.supervisord -c {prefix}/supervisord.conf -n"

    # what it installed runs: the collector CLI from the deployed checkout
    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import collector; print(collector.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=short_tmp,
    )
    assert where.stdout.strip() == str(prefix / "collector" / "__init__.py"), where.stderr
    helped = subprocess.run(
        [python, "-m", "collector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=short_tmp,
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage:" in helped.stdout

    # ... and supervisord starts as systemd would start it: ExecStartPre=+ (the secrets),
    # then ExecStart with the EnvironmentFile. (ops.fleet render is left out: it would start
    # collectors against the real exchanges.)
    secrets.unlink()
    subprocess.run([f"{sbin}/collector-secrets"], env=env, check=True, timeout=60)
    assert secrets.read_text() == SECRETS_ENV
    service_env = {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(prefix),
        **_systemd_environment_file(secrets),
    }
    argv = shlex.split(exec_start)
    # LimitNOFILE=65536 needs a hard limit this sandbox may not grant: ask for what it has.
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_nofile != resource.RLIM_INFINITY and hard_nofile < 65536:
        argv += ["--minfds", str(hard_nofile)]
    sock = prefix / "data" / "supervisor.sock"
    sup = subprocess.Popen(
        argv,
        cwd=prefix,
        env=service_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert sup.poll() is None, f"supervisord exited:\n{sup.communicate()[0]}"
            assert time.monotonic() < deadline, "supervisord did not open its socket in 30 s"
            time.sleep(0.1)
        ctl = subprocess.run(
            [python, "-m", "supervisor.supervisorctl", "-c", f"{prefix}/supervisord.conf", "pid"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ctl.stdout.strip() == str(sup.pid), ctl
        environ = Path(f"/proc/{sup.pid}/environ").read_bytes().split(b"\0")
        assert b"COINBASE_API_KEY=ck-123" in environ
        assert b'COINBASE_API_SECRET=a"b\\c' in environ
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(timeout=30)
        finally:
            if sup.poll() is None:
                sup.kill()
                sup.wait(timeout=10)
    assert sup.returncode == 0
