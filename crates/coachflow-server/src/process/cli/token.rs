//! `coachflow token`: a token for a server in local mode, signed with the key the server
//! keeps beside its database (made here if the server has not made it yet), so a new user
//! can see what a sponsor sees without an identity provider.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::ConfigArgs;
use crate::application::authorization::Scope;
use crate::application::names::is_valid_id;
use crate::process::config::{AuthSettings, Overrides, parse_duration};
use crate::transport::auth::local::{LocalKey, LocalToken};

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// Where the server's database is (the key is beside it): the same settings as `serve`.
    #[command(flatten)]
    config: ConfigArgs,
    /// Who the token names: a person id bound in engagements (`s-1`), or a system's name.
    #[arg(long)]
    subject: String,
    /// The one tenant the token reaches.
    #[arg(long, env = "COACHFLOW_TENANT", default_value = "default")]
    tenant: String,
    /// A power for a system, repeatable: models:write, engagements:write, engagements:read,
    /// events:read, content:read.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// The system acting for the subject (RFC 8693 `act`), recorded beside them.
    #[arg(long = "act", value_name = "SYSTEM")]
    delegate: Option<String>,
    /// How long the token is valid: 30m, 8h, 7d.
    #[arg(long, default_value = "8h")]
    ttl: String,
}

pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let settings = args.config.settings(Overrides::new())?;
    let AuthSettings::Local { key_file } = &settings.auth else {
        anyhow::bail!(
            "the server is configured with an identity provider (auth.issuer): ask it for tokens; \
             `coachflow token` mints tokens for local mode only"
        );
    };
    if !is_valid_id(&args.tenant) {
        anyhow::bail!("--tenant '{}' is not a tenant id", args.tenant);
    }
    for scope in &args.scopes {
        if Scope::parse(scope).is_none() {
            let known: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
            anyhow::bail!("--scope '{scope}' is not one of {}", known.join(", "));
        }
    }
    let lifetime = parse_duration("--ttl", &args.ttl)?;
    let key = LocalKey::load_or_create(key_file).map_err(anyhow::Error::msg)?;
    let token = key.mint(
        &LocalToken {
            subject: args.subject.clone(),
            tenant: args.tenant.clone(),
            scopes: args.scopes.clone(),
            delegate: args.delegate.clone(),
            lifetime,
        },
        crate::process::serve::clock(&settings).now(),
    );
    writeln!(std::io::stdout(), "{token}").context("cannot write the token")?;
    Ok(ExitCode::SUCCESS)
}
