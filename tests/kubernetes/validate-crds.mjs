// Checks prometheus-operator objects (a JSON array on stdin) against the schemas of their CRDs,
// which kubernetes-validate does not ship. Prints one line per object; exits 1 on any error.
import { PodMonitor, Probe, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { PodMonitor, Probe, PrometheusRule, ServiceMonitor };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const object of JSON.parse(input)) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = kinds[object.kind];
  if (object.apiVersion !== "monitoring.coreos.com/v1" || !Model) {
    console.log(`ERROR ${name}: not a monitoring.coreos.com/v1 kind this script knows`);
    failed = true;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`ERROR ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
