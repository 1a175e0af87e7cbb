//! Fuzzes the stack-file loader and the planner: any bytes must give a Stack or errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/nonexistent/grove.toml");
    if let Ok(loaded) = grove_config::load_str(path, text, &Default::default()) {
        if let Ok(plan) = grove_plan::build(&loaded.stack, None) {
            let _ = grove_plan::Plan::diff(&plan, &plan);
            let _ = plan.redacted();
        }
    }
});
