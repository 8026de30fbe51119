#[derive(pgstack::Embedded)]
#[pgstack(collection = "documents")]
struct Document {
    #[pgstack(id)]
    id: u64,
    #[pgstack(embedding)]
    embedding: Vec<f64>,
    title: String,
    tenant_id: String,
}

fn main() {}
