//! How callers reach the service: TLS and mutual TLS on the gRPC port, an identity
//! provider's keys fetched over HTTPS (cached, fetched again for an unknown key id and when
//! they age), and local mode (loopback only, no token is the local administrator, local
//! tokens minted by `coachflow token`).

use std::process::Command;
use std::time::Duration;

use coachflow_integration_tests::client::{builtin_source, parent};
use coachflow_integration_tests::https::{JwksEndpoint, tls_fixture};
use coachflow_integration_tests::identity::SYSTEM_SCOPES;
use coachflow_integration_tests::server::binary;
use coachflow_integration_tests::{Backend, Bearer, Claims, KeyKind, TENANT, TestServer, default_outputs, parse_model};
use coachflow_server::proto::{self, model_service_client::ModelServiceClient};
use coachflow_store::testing::TempDirGuard;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::support::{expect_code, reason};

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(tls_fixture(name)).expect("a TLS fixture")
}

fn trusting_the_test_ca() -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem("ca.pem")))
        .domain_name("localhost")
}

/// Whether a client with `tls` (or plaintext without) gets an answer from the server.
async fn answers(server: &TestServer, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", server.grpc_address()))
        .map_err(|error| error.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|error| error.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|error| format!("{error:?}"))?;
    let bearer = server.bearer(&Claims::system("lms", TENANT, &SYSTEM_SCOPES));
    ModelServiceClient::with_interceptor(channel, bearer)
        .list_models(proto::ListModelsRequest {
            parent: parent(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

fn tls_settings(builder: coachflow_integration_tests::ServerBuilder) -> coachflow_integration_tests::ServerBuilder {
    builder
        .set("server.tls.cert", &tls_fixture("server.pem").display().to_string())
        .set("server.tls.key", &tls_fixture("server.key").display().to_string())
}

async fn the_grpc_port_speaks_tls_and_mutual_tls(backend: Backend) {
    // TLS: a client that trusts the CA is served; a plaintext one is not.
    let server = tls_settings(TestServer::builder(backend))
        .client_tls(trusting_the_test_ca())
        .start()
        .await;
    answers(&server, Some(trusting_the_test_ca()))
        .await
        .expect("a TLS client is served");
    assert!(
        answers(&server, None).await.is_err(),
        "a plaintext client is served by a TLS port"
    );
    drop(server);

    // Mutual TLS: only a client with a certificate of the trusted CA.
    let with_certificate = trusting_the_test_ca().identity(Identity::from_pem(pem("client.pem"), pem("client.key")));
    let server = tls_settings(TestServer::builder(backend))
        .set("server.tls.client_ca", &tls_fixture("ca.pem").display().to_string())
        .client_tls(with_certificate.clone())
        .start()
        .await;
    answers(&server, Some(with_certificate))
        .await
        .expect("a client with a trusted certificate is served");
    let refused = answers(&server, Some(trusting_the_test_ca())).await;
    assert!(
        refused.is_err(),
        "a client without a certificate is served: {refused:?}"
    );
    let stranger = trusting_the_test_ca().identity(Identity::from_pem(pem("stranger.pem"), pem("stranger.key")));
    let refused = answers(&server, Some(stranger)).await;
    assert!(
        refused.is_err(),
        "a client with an untrusted certificate is served: {refused:?}"
    );
}

async fn keys_over_https_are_cached_and_fetched_again_when_needed(backend: Backend) {
    let issuer = coachflow_integration_tests::TestIssuer::new();
    let endpoint = JwksEndpoint::start(issuer.jwks_path()).await;
    let server = TestServer::builder(backend)
        .trusting(&issuer)
        .set("auth.jwks", &endpoint.url())
        .set("auth.jwks_ca", &tls_fixture("ca.pem").display().to_string())
        .set("auth.jwks_cache", "1h")
        .start()
        .await;
    let lms = Claims::system("lms", TENANT, &SYSTEM_SCOPES);
    let list = |token: String| {
        let server = &server;
        async move {
            ModelServiceClient::with_interceptor(server.channel(), Bearer::new(Some(&token)))
                .list_models(proto::ListModelsRequest {
                    parent: parent(),
                    ..Default::default()
                })
                .await
        }
    };
    list(issuer.token(&lms, server.now()))
        .await
        .expect("a token of a published key");
    list(issuer.token_with("rsa-1", &lms, server.now()))
        .await
        .expect("another published key");
    assert_eq!(endpoint.fetches(), 1, "fetched once at start, then kept");

    // A key the issuer added: the unknown key id makes the server fetch again, once (the
    // service's clock spaces such fetches by ten seconds).
    server.advance(chrono::Duration::seconds(11));
    issuer.add_key(KeyKind::Es256, "ec-2");
    list(issuer.token_with("ec-2", &lms, server.now()))
        .await
        .expect("a token of the new key");
    assert_eq!(endpoint.fetches(), 2);
    // Unknown key ids do not make the server hammer the issuer: at most one fetch per
    // interval.
    issuer.add_key(KeyKind::Es256, "ec-3");
    issuer.remove_key("ec-3");
    for _ in 0..5 {
        let status = expect_code(
            "a token of a key the issuer never published",
            list(issuer.token_with("ec-3", &lms, server.now())).await,
            Code::Unauthenticated,
        );
        assert_eq!(reason(&status).as_deref(), Some("UNKNOWN_KEY"));
    }
    assert_eq!(
        endpoint.fetches(),
        2,
        "unknown key ids within the interval fetch nothing"
    );
    // A key the issuer removed is refused once the kept keys age past auth.jwks_cache.
    issuer.remove_key("rsa-1");
    list(issuer.token_with("rsa-1", &lms, server.now()))
        .await
        .expect("within the cache lifetime the kept keys stand");
    server.advance(chrono::Duration::hours(2));
    let status = expect_code(
        "a token of a removed key after the cache lifetime",
        list(issuer.token_with("rsa-1", &lms, server.now())).await,
        Code::Unauthenticated,
    );
    assert_eq!(reason(&status).as_deref(), Some("UNKNOWN_KEY"));
    list(issuer.token(&lms, server.now()))
        .await
        .expect("the keys left still work");
}

/// `coachflow token ...` for the server's database; the token on stdout.
fn mint(server: &TestServer, key: &std::path::Path, arguments: &[&str]) -> String {
    let output = Command::new(binary())
        .env_remove("COACHFLOW_TENANT")
        .arg("token")
        .args(["--database-url", server.database().url()])
        .arg("--set")
        .arg(format!("auth.local_key={}", key.display()))
        .arg("--set")
        .arg(format!("clock_file={}", server.clock().path().display()))
        .args(arguments)
        .output()
        .expect("coachflow token runs");
    assert!(
        output.status.success(),
        "coachflow token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
}

async fn local_mode_serves_loopback_only_and_local_tokens_act_as_they_say(backend: Backend) {
    let keys = TempDirGuard::new();
    let key = keys.path().join("local.token-key");
    let server = TestServer::builder(backend)
        .local_mode()
        .set("auth.local_key", &key.display().to_string())
        .start()
        .await;
    // Without a token: the local administrator, who may do everything.
    let model = server.publish(&builtin_source("four-stage")).await;
    let started = server.create_engagement(&model, "local-1", 1).await;
    let mut outputs = default_outputs(&parse_model(&builtin_source("four-stage")), "kickoff-meeting");
    outputs.fields.insert(
        "background".to_owned(),
        coachflow_integration_tests::drive::json_to_value(&serde_json::json!("LOCAL-MARKER-coach-only")),
    );
    server
        .engagements()
        .complete_task(proto::CompleteTaskRequest {
            name: format!("{}/tasks/kickoff-meeting", started.name),
            outputs: Some(outputs),
            ..Default::default()
        })
        .await
        .expect("the local administrator completes a task");
    assert!(key.is_file(), "the server keeps its local key at {}", key.display());

    // A local token for the sponsor: what a sponsor sees.
    let sponsor = mint(&server, &key, &["--subject", "sponsor-1", "--tenant", TENANT]);
    let mut as_sponsor = coachflow_server::proto::engagement_service_client::EngagementServiceClient::with_interceptor(
        server.channel(),
        Bearer::new(Some(&sponsor)),
    );
    let history = as_sponsor
        .get_history(proto::GetHistoryRequest {
            name: started.name.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("the sponsor reads the history")
        .into_inner();
    let bytes = prost::Message::encode_to_vec(&history);
    assert!(
        !bytes.windows(23).any(|window| window == b"LOCAL-MARKER-coach-only"),
        "the sponsor sees the coach's notes"
    );
    assert!(
        history
            .events
            .iter()
            .any(|event| event.withheld_fields.contains(&"outputs.background".to_owned()))
    );
    let status = expect_code(
        "a sponsor completing the coach's task",
        as_sponsor
            .complete_task(proto::CompleteTaskRequest {
                name: format!("{}/tasks/one-on-one-meeting", started.name),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(reason(&status).as_deref(), Some("NOT_THE_ASSIGNEE"));
    // A token of another tenant reaches nothing here.
    let other = mint(
        &server,
        &key,
        &["--subject", "lms", "--tenant", "globex", "--scope", "engagements:read"],
    );
    let status = expect_code(
        "another tenant's token",
        coachflow_server::proto::engagement_service_client::EngagementServiceClient::with_interceptor(
            server.channel(),
            Bearer::new(Some(&other)),
        )
        .get_engagement(proto::GetEngagementRequest {
            name: started.name.clone(),
        })
        .await,
        Code::PermissionDenied,
    );
    assert_eq!(reason(&status).as_deref(), Some("TENANT_MISMATCH"));
    // A token not signed with the local key is refused.
    let issuer = coachflow_integration_tests::TestIssuer::new();
    let foreign = issuer.token(&Claims::system("lms", TENANT, &SYSTEM_SCOPES), server.now());
    let status = expect_code(
        "a token of another issuer in local mode",
        coachflow_server::proto::engagement_service_client::EngagementServiceClient::with_interceptor(
            server.channel(),
            Bearer::new(Some(&foreign)),
        )
        .get_engagement(proto::GetEngagementRequest {
            name: started.name.clone(),
        })
        .await,
        Code::Unauthenticated,
    );
    assert!(reason(&status).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_the_network_without_an_issuer_is_refused_at_start() {
    let database = TempDirGuard::new();
    let output = Command::new(binary())
        .env("NO_COLOR", "1")
        .args(["serve", "--listen", "0.0.0.0:0", "--metrics-listen", ""])
        .args(["--database-url", database.url()])
        .output()
        .expect("coachflow serve runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("grpc.listen") && stderr.contains("local mode") && stderr.contains("auth.issuer"),
        "{stderr}"
    );
}

on_both_backends!(
    the_grpc_port_speaks_tls_and_mutual_tls,
    keys_over_https_are_cached_and_fetched_again_when_needed,
    local_mode_serves_loopback_only_and_local_tokens_act_as_they_say,
);
