use pgstack::vector::Embedded as _;

#[derive(Debug, pgstack::Embedded)]
#[pgstack(collection = "documents")]
struct Document {
    #[pgstack(id)]
    id: i64,
    #[pgstack(embedding)]
    embedding: Vec<f32>,
    title: Option<String>,
    tenant_id: i64,
    #[pgstack(skip)]
    score: f64,
}

fn main() {
    let doc = Document {
        id: 1,
        embedding: vec![1.0, 0.0, 0.0],
        title: Some("hello".into()),
        tenant_id: 7,
        score: 0.0,
    };
    let record = doc.to_record().expect("a record");
    assert_eq!(record.id, 1);
    assert_eq!(record.fields["tenant_id"], 7);
    let back = Document::from_record(record).expect("the struct again");
    assert_eq!(back.title.as_deref(), Some("hello"));
    assert_eq!(Document::collection().def().dimensions, 3);
    let _ = doc.score;
}
