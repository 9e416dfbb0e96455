//! `hookline event-type`: the event type catalog as the API serves it
//! (`ListEventTypes`), so producers see each type's schema and example and
//! receivers what they will be sent, without reading the repository.

use clap::Subcommand;
use hookline_proto::subscriptions::v1 as spb;
use serde::Serialize;

use super::{ClientArgs, print, status, subscriptions, table};

#[derive(Debug, Subcommand)]
pub enum EventTypeCmd {
    /// The twelve event types with their group and description.
    List,
    /// One type's description, JSON Schema and example event.
    Show {
        /// The type's name, e.g. appointment.booking.created.
        name: String,
    },
}

/// What `--json` prints of a type: the schema and the example as JSON, not
/// as the strings the API carries them in.
#[derive(Serialize)]
struct Printed {
    name: String,
    group: String,
    description: String,
    json_schema: serde_json::Value,
    example: serde_json::Value,
}

impl Printed {
    fn from(t: spb::EventTypeInfo) -> anyhow::Result<Self> {
        Ok(Self {
            json_schema: serde_json::from_str(&t.json_schema)?,
            example: serde_json::from_str(&t.example)?,
            name: t.name,
            group: t.group,
            description: t.description,
        })
    }
}

pub async fn event_type(args: &ClientArgs, cmd: EventTypeCmd) -> anyhow::Result<()> {
    let mut c = subscriptions(args).await?;
    let types = c.list_event_types(spb::ListEventTypesRequest {}).await.map_err(status)?.into_inner().event_types;
    let types = types.into_iter().map(Printed::from).collect::<anyhow::Result<Vec<_>>>()?;
    match cmd {
        EventTypeCmd::List => {
            let human = table(
                ["NAME", "GROUP", "DESCRIPTION"],
                types.iter().map(|t| [t.name.clone(), t.group.clone(), t.description.clone()]),
            );
            print(args.json, &types, human);
        }
        EventTypeCmd::Show { name } => {
            let Some(t) = types.into_iter().find(|t| t.name == name) else {
                let known: Vec<&str> = hookline_domain::event_type::EventType::ALL.iter().map(|t| t.as_str()).collect();
                anyhow::bail!("event type `{name}` is not one of: {}", known.join(", "));
            };
            let human = format!(
                "{} ({})\n{}\n\nJSON Schema:\n{}\n\nExample event:\n{}",
                t.name,
                t.group,
                t.description,
                serde_json::to_string_pretty(&t.json_schema)?,
                serde_json::to_string_pretty(&t.example)?
            );
            print(args.json, &t, human);
        }
    }
    Ok(())
}
