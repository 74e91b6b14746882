//! Search (spec 1.7): the status, recipientStatus, role, from/to and orderAscending filters, the
//! 100-row limit and its errors.

use crate::common::*;
use crate::support::*;
use broker_protocol::time::format as ts;
use uuid::Uuid;

/// Three transfers on the fixture's resource, created in this order:
/// `published_1` (SENDER -> RECIPIENT, Published), `initialized` (SENDER -> RECIPIENT, Initialized),
/// `published_2` (SENDER -> RECIPIENT_2, Published).
struct Scene {
    f: Fixture,
    published_1: Uuid,
    initialized: Uuid,
    published_2: Uuid,
}

async fn scene() -> Scene {
    let f = Fixture::new().await;
    let published_1 = f.publish(&[RECIPIENT], b"one").await;
    let initialized = f.initialize(&[RECIPIENT]).await;
    let published_2 = f.publish(&[RECIPIENT_2], b"two").await;
    Scene {
        f,
        published_1,
        initialized,
        published_2,
    }
}

#[tokio::test]
async fn search_returns_the_callers_transfers_newest_first_or_ascending_on_request() {
    let s = scene().await;
    let all =
        s.f.sender
            .search(&[("resourceId", RESOURCE)])
            .await
            .unwrap();
    assert_eq!(all, vec![s.published_2, s.initialized, s.published_1]);
    let asc =
        s.f.sender
            .search(&[("resourceId", RESOURCE), ("orderAscending", "true")])
            .await
            .unwrap();
    assert_eq!(asc, vec![s.published_1, s.initialized, s.published_2]);
    let desc =
        s.f.sender
            .search(&[("resourceId", RESOURCE), ("orderAscending", "false")])
            .await
            .unwrap();
    assert_eq!(desc, all);
    let mine =
        s.f.recipient
            .search(&[("resourceId", RESOURCE)])
            .await
            .unwrap();
    assert_eq!(mine, vec![s.initialized, s.published_1]);
    let urn =
        s.f.recipient
            .search(&[("resourceId", &format!("urn:altinn:resource:{RESOURCE}"))])
            .await
            .unwrap();
    assert_eq!(urn, mine, "the urn:altinn:resource: prefix is accepted");
}

#[tokio::test]
async fn search_filters_on_the_current_status() {
    let s = scene().await;
    let published =
        s.f.sender
            .search(&[("resourceId", RESOURCE), ("status", "Published")])
            .await
            .unwrap();
    assert_eq!(published, vec![s.published_2, s.published_1]);
    let initialized =
        s.f.sender
            .search(&[("resourceId", RESOURCE), ("status", "Initialized")])
            .await
            .unwrap();
    assert_eq!(initialized, vec![s.initialized]);
    let none =
        s.f.sender
            .search(&[("resourceId", RESOURCE), ("status", "Failed")])
            .await
            .unwrap();
    assert!(none.is_empty());
    let for_recipient =
        s.f.recipient
            .search(&[("resourceId", RESOURCE), ("status", "Published")])
            .await
            .unwrap();
    assert_eq!(for_recipient, vec![s.published_1]);
}

#[tokio::test]
async fn search_by_recipient_status_finds_new_files_for_the_caller_and_ignores_role() {
    let s = scene().await;
    let new_for_me = [
        ("resourceId", RESOURCE),
        ("status", "Published"),
        ("recipientStatus", "Initialized"),
    ];
    assert_eq!(
        s.f.recipient.search(&new_for_me).await.unwrap(),
        vec![s.published_1]
    );
    assert_eq!(
        s.f.recipient_2.search(&new_for_me).await.unwrap(),
        vec![s.published_2]
    );
    assert!(
        s.f.sender.search(&new_for_me).await.unwrap().is_empty(),
        "recipientStatus only looks at transfers where the caller is a recipient"
    );
    let initialized =
        s.f.recipient
            .search(&[("resourceId", RESOURCE), ("recipientStatus", "Initialized")])
            .await
            .unwrap();
    assert_eq!(initialized, vec![s.initialized, s.published_1]);

    s.f.recipient
        .download(s.published_1, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let started =
        s.f.recipient
            .search(&[
                ("resourceId", RESOURCE),
                ("recipientStatus", "DownloadStarted"),
            ])
            .await
            .unwrap();
    assert_eq!(started, vec![s.published_1]);
    assert!(s.f.recipient.search(&new_for_me).await.unwrap().is_empty());
    let with_role =
        s.f.recipient
            .search(&[
                ("resourceId", RESOURCE),
                ("recipientStatus", "DownloadStarted"),
                ("role", "Sender"),
            ])
            .await
            .unwrap();
    assert_eq!(
        with_role,
        vec![s.published_1],
        "role is ignored with recipientStatus"
    );

    s.f.recipient.confirm_download(s.published_1).await.unwrap();
    let confirmed =
        s.f.recipient
            .search(&[
                ("resourceId", RESOURCE),
                ("recipientStatus", "DownloadConfirmed"),
            ])
            .await
            .unwrap();
    assert_eq!(confirmed, vec![s.published_1]);
    let all_confirmed =
        s.f.sender
            .search(&[
                ("resourceId", RESOURCE),
                ("status", "AllConfirmedDownloaded"),
            ])
            .await
            .unwrap();
    assert_eq!(all_confirmed, vec![s.published_1]);
}

#[tokio::test]
async fn search_role_restricts_to_sent_or_received_transfers() {
    let s = scene().await;
    // RECIPIENT also sends one transfer, so it has both roles on the resource.
    let recipient_writer = s.f.server.client(RECIPIENT, &format!("{WRITE} {READ}"));
    let mut body = s.f.initialize_body(&[RECIPIENT_2]);
    body.sender = Some(RECIPIENT.into());
    let sent = recipient_writer.initialize(&body).await.unwrap();

    let as_sender = recipient_writer
        .search(&[("resourceId", RESOURCE), ("role", "Sender")])
        .await
        .unwrap();
    assert_eq!(as_sender, vec![sent]);
    let as_recipient = recipient_writer
        .search(&[("resourceId", RESOURCE), ("role", "Recipient")])
        .await
        .unwrap();
    assert_eq!(as_recipient, vec![s.initialized, s.published_1]);
    let both = recipient_writer
        .search(&[("resourceId", RESOURCE)])
        .await
        .unwrap();
    assert_eq!(both, vec![sent, s.initialized, s.published_1]);
    assert!(s
        .f
        .sender
        .search(&[("resourceId", RESOURCE), ("role", "Recipient")])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn search_from_and_to_bound_the_creation_time_strictly_alone_and_inclusively_together() {
    let s = scene().await;
    let created = |id: Uuid| {
        let c = s.f.sender.clone();
        async move { ts(&c.overview(id).await.unwrap().summary.created) }
    };
    let (c1, c2, c3) = (
        created(s.published_1).await,
        created(s.initialized).await,
        created(s.published_2).await,
    );
    assert!(c1 < c2 && c2 < c3, "{c1} {c2} {c3}");
    let q = |extra: Vec<(&'static str, String)>| {
        let sender = s.f.sender.clone();
        async move {
            let mut query: Vec<(&str, &str)> =
                vec![("resourceId", RESOURCE), ("orderAscending", "true")];
            query.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            sender.search(&query).await.unwrap()
        }
    };
    assert_eq!(
        q(vec![("from", c2.clone())]).await,
        vec![s.published_2],
        "from alone is strict"
    );
    assert_eq!(
        q(vec![("to", c2.clone())]).await,
        vec![s.published_1],
        "to alone is strict"
    );
    assert_eq!(
        q(vec![("from", c1.clone()), ("to", c2.clone())]).await,
        vec![s.published_1, s.initialized],
        "both bounds are inclusive"
    );
    assert_eq!(
        q(vec![("from", c1.clone()), ("to", c3.clone())])
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn with_a_status_from_and_to_bound_the_time_the_transfer_entered_it() {
    let f = Fixture::new().await;
    let early = f.initialize(&[RECIPIENT]).await;
    let late = f.publish(&[RECIPIENT], b"late").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // `early` is created before `late` but published after it.
    f.sender.upload(early, b"early".to_vec()).await.unwrap();
    let published_at = |id: Uuid| {
        let c = f.sender.clone();
        async move { ts(&c.overview(id).await.unwrap().published.unwrap()) }
    };
    let late_published = published_at(late).await;
    let found = f
        .sender
        .search(&[
            ("resourceId", RESOURCE),
            ("status", "Published"),
            ("from", &late_published),
        ])
        .await
        .unwrap();
    assert_eq!(found, vec![early]);
    let ordered = f
        .sender
        .search(&[
            ("resourceId", RESOURCE),
            ("status", "Published"),
            ("orderAscending", "true"),
        ])
        .await
        .unwrap();
    assert_eq!(
        ordered,
        vec![late, early],
        "sorted by the time the status was entered"
    );
}

#[tokio::test]
async fn search_returns_at_most_100_ids() {
    let f = Fixture::new().await;
    for _ in 0..103 {
        f.initialize(&[RECIPIENT]).await;
    }
    let found = f.sender.search(&[("resourceId", RESOURCE)]).await.unwrap();
    assert_eq!(found.len(), 100);
}

#[tokio::test]
async fn a_party_with_no_transfers_on_the_resource_gets_an_empty_list() {
    let s = scene().await;
    assert!(s
        .f
        .third_party
        .search(&[("resourceId", RESOURCE)])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn search_on_an_unknown_resource_is_403_bro_00005() {
    let f = Fixture::new().await;
    expect_problem(
        f.sender.search(&[("resourceId", "no-such-resource")]).await,
        403,
        "BRO-00005",
    );
}

#[tokio::test]
async fn search_needs_a_resource_id_and_valid_filters() {
    let f = Fixture::new().await;
    let p = expect_validation(f.sender.search(&[]).await);
    assert!(names_field(&p, "resourceId"), "{p:?}");
    for (name, value) in [
        ("status", "Nonsense"),
        ("recipientStatus", "9"),
        ("from", "yesterday"),
        ("orderAscending", "maybe"),
        ("role", "Owner"),
    ] {
        let p = expect_validation(
            f.sender
                .search(&[("resourceId", RESOURCE), (name, value)])
                .await,
        );
        assert!(names_field(&p, name), "{name}={value}: {p:?}");
    }
}
