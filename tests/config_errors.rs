//! Error codes of the service-owner and resource endpoints (spec 1.10, 1.11) and the resource rules
//! of initialize (1.2): 2x/1x resource codes, 7002/7004, 25, 26, 27, and with a file registry 5, 24
//! and 28.

use crate::common::*;
use crate::support::*;
use broker::config::{Environment, RegistryMode};
use broker_protocol::resource::ResourceUpdate;
use reqwest::Method;
use serde_json::json;

async fn put_resource(
    client: &broker_protocol::client::BrokerClient,
    id: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    client
        .request(Method::PUT, &format!("/resource/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn invalid_resource_settings_get_their_codes() {
    let f = Fixture::new().await;
    let cases = [
        (json!({"maxFileTransferSize": -1}), "BRO-00011"),
        (json!({"maxFileTransferSize": 0}), "BRO-00012"),
        (
            json!({"maxFileTransferSize": 1_677_721_600_001i64}),
            "BRO-00022",
        ),
        (
            json!({"fileTransferTimeToLive": "thirty days"}),
            "BRO-00014",
        ),
        (json!({"fileTransferTimeToLive": "P366D"}), "BRO-00015"),
        (
            json!({"purgeFileTransferGracePeriod": "two hours"}),
            "BRO-00017",
        ),
        (
            json!({"purgeFileTransferGracePeriod": "PT25H"}),
            "BRO-00018",
        ),
        (json!({"useManifestFileShim": true}), "BRO-00023"),
    ];
    for (body, code) in cases {
        let response = put_resource(&f.owner, RESOURCE, body.clone()).await;
        let problem = expect_problem_response(response, 400, Some(code)).await;
        assert!(problem["detail"].is_string(), "{body}: {problem}");
    }
    // Nothing of the refused updates was stored.
    let r = f.owner.resource(RESOURCE).await.unwrap();
    assert_eq!(r.max_file_transfer_size, None);
    assert_eq!(r.file_transfer_time_to_live, "30.00:00:00");
    assert_eq!(r.purge_file_transfer_grace_period, "02:00:00");
    assert!(!r.use_manifest_file_shim);
}

#[tokio::test]
async fn the_limits_themselves_are_accepted() {
    let f = Fixture::new().await;
    let body = json!({"maxFileTransferSize": 1_677_721_600_000i64, "fileTransferTimeToLive": "P365D", "purgeFileTransferGracePeriod": "PT24H"});
    assert_eq!(
        put_resource(&f.owner, RESOURCE, body)
            .await
            .status()
            .as_u16(),
        204
    );
    let r = f.owner.resource(RESOURCE).await.unwrap();
    assert_eq!(r.file_transfer_time_to_live, "365.00:00:00");
    assert_eq!(r.purge_file_transfer_grace_period, "1.00:00:00");
}

#[tokio::test]
async fn the_manifest_shim_is_accepted_once_service_code_and_edition_are_stored() {
    let f = Fixture::new().await;
    let codes = json!({"externalServiceCodeLegacy": "4711", "externalServiceEditionCodeLegacy": 1});
    assert_eq!(
        put_resource(&f.owner, RESOURCE, codes)
            .await
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        put_resource(&f.owner, RESOURCE, json!({"useManifestFileShim": true}))
            .await
            .status()
            .as_u16(),
        204
    );
    assert!(
        f.owner
            .resource(RESOURCE)
            .await
            .unwrap()
            .use_manifest_file_shim
    );
}

#[tokio::test]
async fn above_50_gb_in_production_without_approval_is_400_bro_00013() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.registry.environment = Environment::Production;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let response = put_resource(
        &f.owner,
        RESOURCE,
        json!({"maxFileTransferSize": 50_000_000_001i64}),
    )
    .await;
    expect_problem_response(response, 400, Some("BRO-00013")).await;
    let response = put_resource(
        &f.owner,
        RESOURCE,
        json!({"maxFileTransferSize": 50_000_000_000i64}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test]
async fn disabling_the_virus_scan_in_production_without_approval_is_400_bro_00020() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.registry.environment = Environment::Production;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.disable_virus_scan = Some(true);
    let problem = expect_problem(f.sender.initialize(&body).await, 400, "BRO-00020");
    // The refusal says how an operator approves it in Broker, not whom to ask at Altinn.
    let detail = problem.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("approved_for_disabled_virus_scan = true")
            && detail.contains("registry file")
            && !detail.contains("Slack"),
        "{problem:?}"
    );
    body.disable_virus_scan = Some(false);
    f.sender.initialize(&body).await.unwrap();
}

#[tokio::test]
async fn disabling_the_virus_scan_outside_production_is_allowed() {
    let f = Fixture::new().await;
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.disable_virus_scan = Some(true);
    let id = f.sender.initialize(&body).await.unwrap();
    f.sender.upload(id, b"unscanned".to_vec()).await.unwrap();
    assert!(!f.sender.overview(id).await.unwrap().summary.use_virus_scan);
}

#[tokio::test]
async fn getting_a_resource_that_was_never_configured_is_400_bro_00025() {
    let f = Fixture::new().await;
    expect_problem(f.owner.resource("never-configured").await, 400, "BRO-00025");
}

#[tokio::test]
async fn another_service_owner_gets_401_bro_00006_on_someone_elses_resource() {
    let f = Fixture::new().await;
    let other = f.server.client(THIRD_PARTY, SO_SCOPE);
    other.create_service_owner("Other owner").await.unwrap();
    expect_problem(other.resource(RESOURCE).await, 401, "BRO-00006");
    expect_problem(
        other
            .configure_resource(
                RESOURCE,
                &ResourceUpdate {
                    max_file_transfer_size: Some(5),
                    ..Default::default()
                },
            )
            .await,
        401,
        "BRO-00006",
    );
    assert_eq!(
        f.owner
            .resource(RESOURCE)
            .await
            .unwrap()
            .max_file_transfer_size,
        None
    );
}

#[tokio::test]
async fn configuring_a_resource_before_registering_as_service_owner_is_400_bro_00024() {
    let server = TestServer::start().await;
    let owner = server.client(SERVICE_OWNER, SO_SCOPE);
    expect_problem(
        owner
            .configure_resource(RESOURCE, &ResourceUpdate::default())
            .await,
        400,
        "BRO-00024",
    );
}

#[tokio::test]
async fn creating_a_service_owner_twice_is_409_bro_07002() {
    let f = Fixture::new().await;
    expect_problem(
        f.owner.create_service_owner("Again").await,
        409,
        "BRO-07002",
    );
    expect_problem(
        f.owner.create_service_owner("Again").await,
        409,
        "BRO-07002",
    );
    assert_eq!(
        f.owner.service_owner().await.unwrap().name,
        "Test service owner"
    );
}

#[tokio::test]
async fn reading_a_service_owner_before_creating_it_is_404_bro_07004() {
    let server = TestServer::start().await;
    let owner = server.client(SERVICE_OWNER, SO_SCOPE);
    expect_problem(owner.service_owner().await, 404, "BRO-07004");
    owner.create_service_owner("Now").await.unwrap();
    assert_eq!(owner.service_owner().await.unwrap().name, "Now");
}

#[tokio::test]
async fn creating_a_service_owner_without_a_name_is_a_validation_problem() {
    let server = TestServer::start().await;
    let owner = server.client(SERVICE_OWNER, SO_SCOPE);
    let response = owner
        .request(Method::POST, "/serviceowner")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = expect_problem_response(response, 400, None).await;
    assert!(
        body["errors"].as_object().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    expect_problem(owner.service_owner().await, 404, "BRO-07004");
}

#[tokio::test]
async fn initialize_on_a_resource_never_configured_is_400_bro_00025() {
    let f = Fixture::new().await;
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.resource_id = Some("not-configured".into());
    expect_problem(f.sender.initialize(&body).await, 400, "BRO-00025");
}

async fn require_party(f: &Fixture) {
    let update = ResourceUpdate {
        required_party: Some(SERVICE_OWNER.into()),
        ..Default::default()
    };
    f.owner.configure_resource(RESOURCE, &update).await.unwrap();
    assert_eq!(
        f.owner
            .resource(RESOURCE)
            .await
            .unwrap()
            .required_party
            .as_deref(),
        Some(SERVICE_OWNER)
    );
}

#[tokio::test]
async fn with_a_required_party_another_single_recipient_is_400_bro_00026() {
    let f = Fixture::new().await;
    require_party(&f).await;
    expect_problem(
        f.sender.initialize(&f.initialize_body(&[RECIPIENT])).await,
        400,
        "BRO-00026",
    );
}

#[tokio::test]
async fn with_a_required_party_several_recipients_are_400_bro_00027() {
    let f = Fixture::new().await;
    require_party(&f).await;
    expect_problem(
        f.sender
            .initialize(&f.initialize_body(&[RECIPIENT, RECIPIENT_2]))
            .await,
        400,
        "BRO-00027",
    );
    expect_problem(
        f.sender
            .initialize(&f.initialize_body(&[SERVICE_OWNER, RECIPIENT]))
            .await,
        400,
        "BRO-00027",
    );
}

#[tokio::test]
async fn with_a_required_party_it_may_be_the_only_recipient_or_the_sender() {
    let f = Fixture::new().await;
    require_party(&f).await;
    f.sender
        .initialize(&f.initialize_body(&["urn:altinn:organization:identifier-no:991825827"]))
        .await
        .unwrap();
    let party = f.server.client(SERVICE_OWNER, WRITE);
    let mut body = f.initialize_body(&[RECIPIENT, RECIPIENT_2]);
    body.sender = Some(SERVICE_OWNER.into());
    party.initialize(&body).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// A registry file: resources, owners and access lists as Altinn's Resource Registry would give them.

const REGISTRY: &str = r#"
[[resource]]
id = "test-resource"
owner = "0192:991825827"
accessListMode = "Enabled"
access_list = ["0192:222222222"]
allowed_senders = []
approved_for_disabled_virus_scan = false

[[resource]]
id = "orphan-resource"
owner = "0192:555555555"

[[resource]]
id = "listed-only"
owner = "0192:991825827"

[[resource]]
id = "ttd-resource"
owner = "ttd"

[[resource]]
id = "closed-senders"
owner = "0192:991825827"
allowed_senders = ["0192:444444444"]
"#;

/// A fixture whose server reads `REGISTRY`; the owner is registered and `test-resource` configured.
async fn file_registry_fixture() -> (Fixture, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.registry.mode = RegistryMode::File;
    config.registry.file = Some(registry);
    (Fixture::on(TestServer::start_with(config).await).await, dir)
}

#[tokio::test]
async fn with_a_registry_file_a_resource_it_does_not_list_is_403_bro_00005() {
    let (f, _dir) = file_registry_fixture().await;
    expect_problem(
        f.owner
            .configure_resource("unlisted", &ResourceUpdate::default())
            .await,
        403,
        "BRO-00005",
    );
}

#[tokio::test]
async fn with_a_registry_file_a_resource_whose_owner_is_not_a_service_owner_is_400_bro_00024() {
    let (f, _dir) = file_registry_fixture().await;
    let orphan_owner = f.server.client("0192:555555555", SO_SCOPE);
    expect_problem(
        orphan_owner
            .configure_resource("orphan-resource", &ResourceUpdate::default())
            .await,
        400,
        "BRO-00024",
    );
    orphan_owner
        .create_service_owner("Late owner")
        .await
        .unwrap();
    orphan_owner
        .configure_resource("orphan-resource", &ResourceUpdate::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn with_a_registry_file_only_the_listed_owner_may_configure_a_resource() {
    let (f, _dir) = file_registry_fixture().await;
    let other = f.server.client(THIRD_PARTY, SO_SCOPE);
    other.create_service_owner("Other").await.unwrap();
    expect_problem(
        other
            .configure_resource("listed-only", &ResourceUpdate::default())
            .await,
        401,
        "BRO-00006",
    );
    f.owner
        .configure_resource("listed-only", &ResourceUpdate::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn with_a_registry_file_a_resource_owned_by_ttd_belongs_to_org_991825827() {
    let (f, _dir) = file_registry_fixture().await;
    f.owner
        .configure_resource("ttd-resource", &ResourceUpdate::default())
        .await
        .unwrap();
    let mut body = f.initialize_body(&[RECIPIENT_2]);
    body.resource_id = Some("ttd-resource".into());
    f.sender.initialize(&body).await.unwrap();
}

#[tokio::test]
async fn with_an_access_list_every_recipient_must_be_on_it_or_400_bro_00028() {
    let (f, _dir) = file_registry_fixture().await;
    expect_problem(
        f.sender
            .initialize(&f.initialize_body(&[RECIPIENT_2]))
            .await,
        400,
        "BRO-00028",
    );
    expect_problem(
        f.sender
            .initialize(&f.initialize_body(&[RECIPIENT, RECIPIENT_2]))
            .await,
        400,
        "BRO-00028",
    );
    let id = f
        .sender
        .initialize(&f.initialize_body(&[RECIPIENT]))
        .await
        .unwrap();
    f.sender.upload(id, b"listed".to_vec()).await.unwrap();
}

#[tokio::test]
async fn with_a_registry_file_a_listed_but_unconfigured_resource_is_25_on_initialize_and_5_on_search(
) {
    let (f, _dir) = file_registry_fixture().await;
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.resource_id = Some("listed-only".into());
    expect_problem(f.sender.initialize(&body).await, 400, "BRO-00025");
    expect_problem(
        f.sender.search(&[("resourceId", "listed-only")]).await,
        403,
        "BRO-00005",
    );
    expect_problem(
        f.sender.search(&[("resourceId", "unlisted")]).await,
        403,
        "BRO-00005",
    );
}

#[tokio::test]
async fn with_a_registry_file_a_sender_outside_allowed_senders_is_401_bro_00006() {
    let (f, _dir) = file_registry_fixture().await;
    f.owner
        .configure_resource("closed-senders", &ResourceUpdate::default())
        .await
        .unwrap();
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.resource_id = Some("closed-senders".into());
    expect_problem(f.sender.initialize(&body).await, 401, "BRO-00006");
    body.sender = Some(THIRD_PARTY.into());
    f.third_party.initialize(&body).await.unwrap();
}
