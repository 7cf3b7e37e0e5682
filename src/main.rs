use webhook_operator::cli::{parse, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
