#[derive(pgstack::Embedded)]
#[pgstack(collection = "documents")]
struct Document {
    id: i64,
    #[pgstack(embedding)]
    embedding: Vec<f32>,
}

fn main() {}
