//! `cargo run -- up` applies pending migrations (sea-orm-migration's CLI, reading
//! `DATABASE_URL`). `pgstack-gen migrate` applies pgstack's under an advisory lock instead.
#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}
