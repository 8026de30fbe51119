#[derive(pgstack::Embedded)]
#[pgstack(collection = "pages")]
struct Page {
    #[pgstack(id)]
    id: i64,
    #[pgstack(embedding)]
    embedding: Vec<f32>,
}

fn main() {}
