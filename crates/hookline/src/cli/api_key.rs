//! `hookline api-key create|list|revoke`.

use clap::Subcommand;
use hookline_proto::subscriptions::v1 as spb;
use serde_json::json;

use super::{ClientArgs, print, status, subscriptions, table};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key for a tenant; the key is printed once.
    Create {
        tenant: String,
        /// A label for humans.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a tenant's API keys (ids and labels, never the keys).
    List { tenant: String },
    /// Revoke an API key at once.
    Revoke { tenant: String, key_id: String },
}

/// `hookline api-key ...` (operator token required when authentication is on).
pub async fn api_key(args: &ClientArgs, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    let mut c = subscriptions(args).await?;
    match cmd {
        ApiKeyCmd::Create { tenant, name } => {
            let k = c
                .create_api_key(spb::CreateApiKeyRequest { tenant_id: tenant, name })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, &k, format!("{}  {}\n(shown once: store it now)", k.key_id, k.key));
        }
        ApiKeyCmd::List { tenant } => {
            let keys =
                c.list_api_keys(spb::ListApiKeysRequest { tenant_id: tenant }).await.map_err(status)?.into_inner().keys;
            let human = if keys.is_empty() {
                "no API keys".to_owned()
            } else {
                table(
                    ["KEY", "CREATED", "NAME"],
                    keys.iter().map(|k| [k.key_id.clone(), k.created_at.clone(), k.name.clone()]),
                )
            };
            print(args.json, &keys, human);
        }
        ApiKeyCmd::Revoke { tenant, key_id } => {
            c.revoke_api_key(spb::RevokeApiKeyRequest { tenant_id: tenant, key_id: key_id.clone() })
                .await
                .map_err(status)?;
            print(args.json, &json!({"revoked": key_id}), format!("revoked {key_id}"));
        }
    }
    Ok(())
}
