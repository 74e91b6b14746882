//! The authorization matrix (see `auth_matrix`) for the service-owner, resource, maintenance and
//! anonymous endpoints, and the bearer scheme itself.

use crate::auth_matrix::*;
use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn creating_a_service_owner_needs_the_service_owner_scope() {
    let f = Fixture::new().await;
    let newcomer = "0192:666666666";
    let cases = vec![
        caller(
            &f,
            "the broker write+read scopes",
            newcomer,
            BOTH,
            Forbidden,
        ),
        caller(
            &f,
            "the maintenance scope",
            newcomer,
            MAINTENANCE,
            Forbidden,
        ),
        caller(&f, "a new service owner", newcomer, SO_SCOPE, Success(200)),
    ];
    run(
        &f,
        Endpoint::CreateServiceOwner,
        (newcomer, SO_SCOPE),
        cases,
    )
    .await;
}

#[tokio::test]
async fn reading_the_service_owner_needs_the_service_owner_scope() {
    let f = Fixture::new().await;
    let cases = vec![
        caller(
            &f,
            "the broker write+read scopes",
            SERVICE_OWNER,
            BOTH,
            Forbidden,
        ),
        caller(
            &f,
            "the service owner",
            SERVICE_OWNER,
            SO_SCOPE,
            Success(200),
        ),
    ];
    run(
        &f,
        Endpoint::GetServiceOwner,
        (SERVICE_OWNER, SO_SCOPE),
        cases,
    )
    .await;
}

#[tokio::test]
async fn a_resource_is_configured_and_read_only_by_its_owner() {
    let f = Fixture::new().await;
    f.server
        .client(THIRD_PARTY, SO_SCOPE)
        .create_service_owner("Other")
        .await
        .unwrap();
    for endpoint in [Endpoint::PutResource, Endpoint::GetResource] {
        let success = if matches!(endpoint, Endpoint::PutResource) {
            204
        } else {
            200
        };
        let cases = vec![
            caller(
                &f,
                "the owner with the broker scopes",
                SERVICE_OWNER,
                BOTH,
                Forbidden,
            ),
            caller(&f, "the sender", SENDER, BOTH, Forbidden),
            caller(
                &f,
                "another service owner",
                THIRD_PARTY,
                SO_SCOPE,
                Problem(401, "BRO-00006"),
            ),
            caller(&f, "the owner", SERVICE_OWNER, SO_SCOPE, Success(success)),
        ];
        run(&f, endpoint, (SERVICE_OWNER, SO_SCOPE), cases).await;
    }
}

#[tokio::test]
async fn the_event_outbox_needs_the_maintenance_scope() {
    let f = Fixture::new().await;
    let cases = vec![
        caller(
            &f,
            "the service owner scope",
            SERVICE_OWNER,
            SO_SCOPE,
            Forbidden,
        ),
        caller(&f, "the sender", SENDER, BOTH, Forbidden),
        caller(&f, "maintenance", SERVICE_OWNER, MAINTENANCE, Success(200)),
    ];
    run(&f, Endpoint::Events, (SERVICE_OWNER, MAINTENANCE), cases).await;
}

#[tokio::test]
async fn health_and_openapi_need_no_token_and_ignore_a_bad_one() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for path in ["/health", "/openapi.json"] {
        for token in [None, Some("not.a.jwt")] {
            let mut b = http.get(format!("{}{path}", server.url));
            if let Some(t) = token {
                b = b.bearer_auth(t);
            }
            assert_eq!(
                b.send().await.unwrap().status().as_u16(),
                200,
                "{path} with {token:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_401() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = f.server.token(SENDER, WRITE);
    let http = reqwest::Client::new();
    let url = f.server.api(&format!("/filetransfer/{id}"));
    let ok = http
        .get(&url)
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status().as_u16(),
        200,
        "the scheme name is case-insensitive"
    );
    let basic = http
        .get(&url)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    assert_eq!(header(&basic, "www-authenticate"), "Bearer");
}
