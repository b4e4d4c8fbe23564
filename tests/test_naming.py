"""The one naming rule for columns: every top-level field name in snake_case (``naming``)."""

from __future__ import annotations

import copy
import typing as t

import pytest

from tap_qualys.naming import GATEWAY_SCHEMAS, Columns, snake_case, upgrade_state
from tap_qualys.tap import TapQualys

GATEWAY_STREAMS = ("csam_assets", "pcrs_policies", "pcrs_policy_host_ids", "pcrs_posture_info")

#: Every top-level key of the gateway schemas whose column is not just the key lowercased,
#: written out by hand: acronyms, digits and the API's odd spellings included.
EXPECTED = {
    "agentId": "agent_id",
    "agentLastDetectedDate": "agent_last_detected_date",
    "assetId": "asset_id",
    "assetName": "asset_name",
    "assetType": "asset_type",
    "assetUUID": "asset_uuid",
    "assignedLocation": "assigned_location",
    "biosAssetTag": "bios_asset_tag",
    "biosDescription": "bios_description",
    "biosSerialNumber": "bios_serial_number",
    "businessAppListData": "business_app_list_data",
    "businessInformation": "business_information",
    "causeOfFailure": "cause_of_failure",
    "cloudProvider": "cloud_provider",
    "complianceLastScanDate": "compliance_last_scan_date",
    "controlId": "control_id",
    "controlReference": "control_reference",
    "controlStatement": "control_statement",
    "cpuCount": "cpu_count",
    "createdBy": "created_by",
    "createdDate": "created_date",
    "currentBatch": "current_batch",
    "customAttributes": "custom_attributes",
    "customerId": "customer_id",
    "customerUuid": "customer_uuid",
    "dnsName": "dns_name",
    "domainName": "domain_name",
    "domainRole": "domain_role",
    "easmTags": "easm_tags",
    "firstFailDate": "first_fail_date",
    "firstPassDate": "first_pass_date",
    "hostId": "host_id",
    "hostingCategory1": "hosting_category1",
    "hwUUID": "hw_uuid",
    "isContainerHost": "is_container_host",
    "lastBoot": "last_boot",
    "lastEvaluatedDate": "last_evaluated_date",
    "lastFailDate": "last_fail_date",
    "lastLocation": "last_location",
    "lastLoggedOnUser": "last_logged_on_user",
    "lastModifiedDate": "last_modified_date",
    "lastPassDate": "last_pass_date",
    "missingSoftware": "missing_software",
    "modifiedBy": "modified_by",
    "modifiedDate": "modified_date",
    "netBios": "net_bios",
    "netbiosName": "netbios_name",
    "networkId": "network_id",
    "networkInterfaceListData": "network_interface_list_data",
    "networkName": "network_name",
    "openPortListData": "open_port_list_data",
    "operatingSystem": "operating_system",
    "organizationName": "organization_name",
    "osCpe": "os_cpe",
    "passiveSensor": "passive_sensor",
    "policyId": "policy_id",
    "policyTitle": "policy_title",
    "postureModifiedDate": "posture_modified_date",
    "previousStatus": "previous_status",
    "qgHostid": "qg_hostid",
    "riskScore": "risk_score",
    "scanSource": "scan_source",
    "scannerLastDetectedDate": "scanner_last_detected_date",
    "sensorLastUpdatedDate": "sensor_last_updated_date",
    "serviceList": "service_list",
    "softwareComponent": "software_component",
    "softwareListData": "software_list_data",
    "subscriptionId": "subscription_id",
    "tagList": "tag_list",
    "technologyId": "technology_id",
    "timeZone": "time_zone",
    "totalBatches": "total_batches",
    "totalMemory": "total_memory",
    "trackingMethod": "tracking_method",
    "userAccountListData": "user_account_list_data",
    "volumeListData": "volume_list_data",
}


def _api_keys() -> set[str]:
    return {
        key for name in GATEWAY_STREAMS for key in GATEWAY_SCHEMAS.api_schema(name)["properties"]
    }


def test_every_schema_key_has_its_expected_column() -> None:
    for key in sorted(_api_keys()):
        assert snake_case(key) == EXPECTED.get(key, key.lower()), key
        # Keys that are one lower-case word stay as they are.
        if key not in EXPECTED:
            assert key == key.lower(), f"{key} is missing from EXPECTED"
    assert set(EXPECTED) <= _api_keys()  # the table tracks the schemas


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("UNIQUE_VULN_ID", "unique_vuln_id"),  # XML element names: the same rule
        ("asset_id", "asset_id"),  # already a column
        ("hwUUIDList", "hw_uuid_list"),
        ("ipV6", "ip_v6"),
    ],
)
def test_snake_case_rule(name: str, column: str) -> None:
    assert snake_case(name) == column


def test_stream_schemas_and_keys_are_snake_case() -> None:
    tap = TapQualys(config={"username": "u", "password": "p", "api_server": "http://127.0.0.1:9"})
    for name in GATEWAY_STREAMS:
        stream = tap.streams[name]
        properties = stream.schema["properties"]
        assert list(properties) == [
            snake_case(k) for k in GATEWAY_SCHEMAS.api_schema(name)["properties"]
        ]
        assert all(key == snake_case(key) for key in properties), name
        assert set(stream.primary_keys) <= set(properties), name
        assert stream.replication_key is None or stream.replication_key in properties, name
    # Nested values keep Qualys' own keys.
    agent = tap.streams["csam_assets"].schema["properties"]["agent"]["properties"]
    assert "lastCheckedIn" in agent


def test_columns_rename_top_level_only_and_keep_unknown_keys() -> None:
    columns = Columns(GATEWAY_SCHEMAS.api_schema("csam_assets"))
    record = {"assetId": 1, "agent": {"lastCheckedIn": 5}, "newFieldX": 2, "host_id": 3}
    assert columns(record) == {
        "asset_id": 1,
        "agent": {"lastCheckedIn": 5},
        "new_field_x": 2,
        "host_id": 3,
    }


def test_old_state_names_are_upgraded() -> None:
    old: dict[str, t.Any] = {
        "bookmarks": {
            "csam_assets": {
                "replication_key": "lastModifiedDate",
                "replication_key_value": "2026-11-01T00:00:00.000Z",
                "resume": {"lastSeenAssetId": 42, "query": {}, "started": "2026-11-01T00:00:00Z"},
            },
            "pcrs_policies": {
                "replication_key": "lastEvaluatedDate",
                "replication_key_value": "2026-11-01T00:00:00Z",
            },
            "hosts": {"replication_key": "last_vm_scanned_date", "replication_key_value": "x"},
        }
    }
    new = upgrade_state(copy.deepcopy(old))["bookmarks"]
    assert new["csam_assets"]["replication_key"] == "last_modified_date"
    assert new["csam_assets"]["resume"] == {
        "last_seen_asset_id": 42,
        "query": {},
        "started": "2026-11-01T00:00:00Z",
    }
    assert new["pcrs_policies"]["replication_key"] == "last_evaluated_date"
    assert new["hosts"] == old["bookmarks"]["hosts"]
    assert upgrade_state({"bookmarks": {"x": 1}}) == {"bookmarks": {"x": 1}}
