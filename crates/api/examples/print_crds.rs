use database_operator_api::v1;
fn main() {
    for crd in v1::crds() {
        println!(
            "---\n{}",
            serde_json::to_string_pretty(&crd).expect("a CRD serialises to JSON")
        );
    }
}
