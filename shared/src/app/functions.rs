//! The Lambda binary's dispatch: which role a function of template.yaml runs, by the name
//! its `WXDESK_FUNCTION` gives it. One binary serves them all (built once by `sam build`).

use crate::app::routes::ROUTES;

/// The functions of template.yaml that serve no route, by their `WXDESK_FUNCTION`.
const JOBS: [&str; 2] = ["token-refresher", "deliver-worker"];

/// The functions of template.yaml, by the name its `WXDESK_FUNCTION` gives each: one per
/// route of the route table that has one, and the two scheduled jobs.
pub fn functions() -> Vec<&'static str> {
    ROUTES
        .iter()
        .filter_map(|d| d.lambda.as_ref().map(|l| l.function))
        .chain(JOBS)
        .collect()
}

/// The whole main of the Lambda binary: runs the role `function` names.
pub async fn run_function(function: &str) -> Result<(), lambda_http::Error> {
    match function {
        "token-refresher" => return crate::app::refresher::run_lambda().await,
        "deliver-worker" => return crate::app::worker::run_lambda().await,
        _ => {}
    }
    let route = ROUTES
        .iter()
        .find(|d| d.lambda.as_ref().is_some_and(|l| l.function == function));
    match route {
        Some(d) => crate::app::lambda::run(d.kind).await,
        None => {
            crate::telemetry::init();
            let why = format!(
                "WXDESK_FUNCTION={function:?} names no function (one of {})",
                functions().join(", ")
            );
            tracing::error!("{why}");
            Err(why.into())
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_unknown_function_name_is_an_error_naming_the_choices() {
        let err = super::run_function("wechat-calback").await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("wechat-calback") && text.contains("deliver-worker"),
            "{text}"
        );
    }
}
