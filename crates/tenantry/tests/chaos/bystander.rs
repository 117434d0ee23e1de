//! Someone else on the machine's PostgreSQL while the chaos suite runs: another tenantry installation with a
//! tenant database of its own. The suite must neither take that database for one of its orphans nor stop,
//! restart or blackhole the server it lives on; the suite breaks only the clusters `scripts/test-services` made.

use crate::harness::registry_admin_url;
use sqlx::{Connection, Executor, PgConnection};

pub struct Bystander {
    /// The other installation's tenant database, named as tenantry names tenants.
    database: String,
    /// When the machine's server started: a restart, however brief, changes it.
    postmaster_started: String,
}

async fn machine_server() -> Result<PgConnection, String> {
    PgConnection::connect(&registry_admin_url())
        .await
        .map_err(|error| format!("the machine's PostgreSQL: {error}"))
}

async fn postmaster_started(connection: &mut PgConnection) -> Result<String, String> {
    sqlx::query_scalar("SELECT pg_postmaster_start_time()::text")
        .fetch_one(connection)
        .await
        .map_err(|error| format!("the machine's PostgreSQL: {error}"))
}

impl Bystander {
    /// Puts another installation's tenant database on the machine's PostgreSQL.
    pub async fn arrive() -> Result<Bystander, String> {
        let mut connection = machine_server().await?;
        let database = format!("tenant_bystander_{}", uuid::Uuid::now_v7().simple());
        connection
            .execute(format!("CREATE DATABASE \"{database}\"").as_str())
            .await
            .map_err(|error| format!("creating {database}: {error}"))?;
        Ok(Bystander {
            database,
            postmaster_started: postmaster_started(&mut connection).await?,
        })
    }

    /// Checks that the machine's server ran throughout and still holds the bystander's database, then removes it.
    pub async fn leave(self) -> Result<String, String> {
        let mut connection = machine_server().await?;
        let started = postmaster_started(&mut connection).await?;
        let still_there: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&self.database)
                .fetch_one(&mut connection)
                .await
                .map_err(|error| error.to_string())?;
        connection
            .execute(format!("DROP DATABASE IF EXISTS \"{}\"", self.database).as_str())
            .await
            .map_err(|error| format!("dropping {}: {error}", self.database))?;
        if started != self.postmaster_started {
            return Err(format!(
                "the machine's PostgreSQL was restarted during the suite (up since {}, now since {started})",
                self.postmaster_started
            ));
        }
        if !still_there {
            return Err(format!("{} was dropped by the suite", self.database));
        }
        Ok(format!(
            "the machine's PostgreSQL up since {started} throughout; {} untouched",
            self.database
        ))
    }
}
