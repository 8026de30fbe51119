#[derive(pgstack::Embedded)]
#[pgstack(collection = "documents")]
struct Document {
    #[pgstack(id)]
    id: i64,
    #[pgstack(embedding)]
    embedding: Vec<f32>,
    title: String,
    tenant_id: i64,
    author: String,
}

fn main() {}
