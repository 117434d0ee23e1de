//! `users add|token|revoke-token|list`: platform users (argon2id passwords) and API tokens (stored hashed, shown once).

use crate::app::{cli_actor, App};
use crate::cli::UsersCommand;
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use std::io::Read;
use std::process::ExitCode;
use tenantry_core::{AdminEmail, Error as CodedError, ErrorCode, PlatformRole};
use tenantry_providers::credentials::{hash_password, random_token, SecretString};
use tenantry_registry::{now_millis, ApiToken, PlatformUser};
use tenantry_server::auth::{format_token, sha256_hex};
use tenantry_workflows::registry_error;

const MIN_PASSWORD_CHARS: usize = 12;

pub async fn run(app: &App, command: UsersCommand, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    match command {
        UsersCommand::Add {
            email,
            role,
            tenant,
            password_stdin,
        } => {
            let email = AdminEmail::parse(&email)?;
            let role = PlatformRole::parse(&role)?;
            let tenant_slug = tenant_scope(app, role, tenant.as_deref()).await?;
            let (password, generated) = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|error| {
                        CodedError::invalid_input(format!(
                            "cannot read the password from stdin: {error}"
                        ))
                    })?;
                let password = text.trim_end_matches(['\r', '\n']).to_owned();
                if password.chars().count() < MIN_PASSWORD_CHARS {
                    return Err(CodedError::invalid_input(format!(
                        "the password needs at least {MIN_PASSWORD_CHARS} characters"
                    ))
                    .into());
                }
                (SecretString::new(password), false)
            } else {
                (random_token(18), true)
            };
            let password_hash = hash_password(&password)
                .map_err(|message| CodedError::new(ErrorCode::Internal, message))?;
            let user = PlatformUser {
                id: uuid::Uuid::now_v7().simple().to_string(),
                email: email.as_str().to_owned(),
                role,
                password_hash,
                created_at: now_millis(),
                tenant_slug: tenant_slug.clone(),
            };
            match registry.add_user(&user, &cli_actor()).await {
                Ok(()) => {}
                Err(tenantry_registry::Error::Conflict { .. }) => {
                    return Err(CodedError::new(
                        ErrorCode::Conflict,
                        format!("a user with email {} exists", user.email),
                    )
                    .into())
                }
                Err(error) => return Err(registry_error(error).into()),
            }
            if json {
                let mut body = serde_json::json!({
                    "user_id": user.id, "email": user.email, "role": role, "tenant": tenant_slug,
                });
                if generated {
                    body["password"] = serde_json::Value::String(password.expose().to_owned());
                }
                print_json(&body)?;
            } else {
                match &tenant_slug {
                    Some(slug) => println!(
                        "user {} added with role {role} for tenant {slug}",
                        user.email
                    ),
                    None => println!("user {} added with role {role}", user.email),
                }
                if generated {
                    println!("password: {}", password.expose());
                    println!("(shown once; sign in at /platform/login)");
                }
            }
        }
        UsersCommand::Token {
            email,
            name,
            expires_in_days,
        } => {
            if expires_in_days == Some(0) {
                return Err(CodedError::invalid_input(
                    "--expires-in-days 0 would make a token that has already expired; give 1 or more, or leave it out for a token that does not expire",
                )
                .into());
            }
            let user = registry
                .get_user_by_email(&email.trim().to_ascii_lowercase())
                .await
                .map_err(registry_error)?
                .ok_or_else(|| {
                    CodedError::new(ErrorCode::NotFound, format!("no user with email {email:?}"))
                })?;
            let token_id = uuid::Uuid::now_v7().simple().to_string()[..16].to_owned();
            let secret = random_token(32);
            let token = ApiToken {
                id: token_id.clone(),
                user_id: user.id.clone(),
                name,
                secret_hash: sha256_hex(secret.expose()),
                created_at: now_millis(),
                expires_at: expires_in_days.map(|days| now_millis() + i64::from(days) * 86_400_000),
                revoked_at: None,
            };
            registry
                .add_token(&token, &cli_actor())
                .await
                .map_err(registry_error)?;
            let presented = format_token(&token_id, secret.expose());
            if json {
                print_json(
                    &serde_json::json!({ "token_id": token_id, "token": presented, "expires_at": token.expires_at }),
                )?;
            } else {
                println!("{presented}");
                eprintln!("(token {token_id} for {}; shown once; revoke with `tenantry users revoke-token {token_id}`)", user.email);
            }
        }
        UsersCommand::RevokeToken { token_id } => {
            match registry.revoke_token(&token_id, &cli_actor()).await {
                Ok(()) => {}
                Err(tenantry_registry::Error::NotFound { .. }) => {
                    return Err(CodedError::new(
                        ErrorCode::NotFound,
                        format!("no active token {token_id:?}"),
                    )
                    .into())
                }
                Err(error) => return Err(registry_error(error).into()),
            }
            if json {
                print_json(&serde_json::json!({ "token_id": token_id, "revoked": true }))?;
            } else {
                println!("token {token_id} revoked");
            }
        }
        UsersCommand::List => {
            let users = registry.list_users().await.map_err(registry_error)?;
            if json {
                print_json(&users)?;
            } else {
                let mut rows = Vec::new();
                for user in &users {
                    let tokens = registry
                        .list_tokens(&user.id)
                        .await
                        .map_err(registry_error)?;
                    let active = tokens
                        .iter()
                        .filter(|token| token.is_usable(now_millis()))
                        .count();
                    rows.push(vec![
                        user.email.clone(),
                        user.role.to_string(),
                        user.tenant_slug.clone().unwrap_or_else(|| "-".into()),
                        active.to_string(),
                        when(Some(user.created_at)),
                    ]);
                }
                print_table(
                    &["EMAIL", "ROLE", "TENANT", "ACTIVE TOKENS", "CREATED"],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tenant a new user is scoped to: required for `TENANT_ADMIN` (a registered tenant that is not offboarded),
/// refused for the platform roles, which see every tenant.
async fn tenant_scope(
    app: &App,
    role: PlatformRole,
    tenant: Option<&str>,
) -> Result<Option<String>, CodedError> {
    match (role, tenant) {
        (PlatformRole::TenantAdmin, None) => Err(CodedError::invalid_input(
            "a TENANT_ADMIN is scoped to one tenant: give --tenant SLUG",
        )),
        (PlatformRole::TenantAdmin, Some(slug)) => {
            let slug = tenantry_core::Slug::parse(slug)?;
            let known = app
                .platform
                .registry
                .get_tenant(slug.as_str())
                .await
                .map_err(registry_error)?
                .filter(|tenant| tenant.status != tenantry_core::TenantStatus::Offboarded);
            match known {
                Some(_) => Ok(Some(slug.as_str().to_owned())),
                None => Err(CodedError::new(
                    ErrorCode::NotFound,
                    format!("tenant {:?} is not registered", slug.as_str()),
                )),
            }
        }
        (_, Some(_)) => Err(CodedError::invalid_input(format!(
            "--tenant scopes a TENANT_ADMIN; a {role} sees every tenant"
        ))),
        (_, None) => Ok(None),
    }
}
