fn main() {
    for crd in api::crds() {
        println!(
            "---\n{}",
            serde_json::to_string_pretty(&crd).expect("a CRD serialises to JSON")
        );
    }
}
