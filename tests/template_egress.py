"""template.yaml's egress choices, on the template SAM deploys (transformed by the SAM
translator, so that Globals are merged as CloudFormation will see them): with `nat` or
`subnets` every function runs in the VPC on the right subnets and security groups (each
one calls WeChat, whose IP allow-list needs a fixed address), with `none` none does; `nat`
creates the NAT gateway and its Elastic IP and outputs that address.

Run with the SAM CLI's python (CI: .ci/.sam/bin/python tests/template_egress.py).
"""

import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class Policies:
    """The managed policies SAM may attach, without asking IAM."""

    def load(self):
        arn = "arn:aws:iam::aws:policy/service-role/"
        return {n: arn + n for n in ["AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole"]}


def transformed():
    text = open("template.yaml").read()
    # The translator wants code in S3; where it is does not matter here.
    text = text.replace("CodeUri: functions/wxdesk-lambda", "CodeUri: s3://bucket/key")
    return transform(yaml_parse(text), {}, Policies())


def holds(cond, conditions, params):
    """A CloudFormation condition, evaluated for `params`."""
    if isinstance(cond, dict):
        (op, arg), = cond.items()
        if op == "Condition":
            return holds(conditions[arg], conditions, params)
        if op == "Fn::Equals":
            return value(arg[0], conditions, params) == value(arg[1], conditions, params)
        if op == "Fn::Or":
            return any(holds(c, conditions, params) for c in arg)
        if op == "Fn::And":
            return all(holds(c, conditions, params) for c in arg)
        if op == "Fn::Not":
            return not holds(arg[0], conditions, params)
    raise ValueError(f"cannot evaluate {cond!r}")


def value(v, conditions, params):
    """A property's value for `params`: Fn::If resolved, Ref of a parameter resolved."""
    if isinstance(v, dict) and len(v) == 1:
        (op, arg), = v.items()
        if op == "Fn::If":
            name, yes, no = arg
            return value(yes if holds(conditions[name], conditions, params) else no, conditions, params)
        if op == "Ref" and arg in params:
            return params[arg]
        if op == "Ref" and arg == "AWS::NoValue":
            return None
    if isinstance(v, dict):
        out = {k: value(x, conditions, params) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not None}
    if isinstance(v, list):
        return [value(x, conditions, params) for x in v]
    return v


def main():
    t = transformed()
    res, conditions, outputs = t["Resources"], t["Conditions"], t["Outputs"]
    functions = {n: r for n, r in res.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) >= 10, sorted(functions)
    base = {"Egress": "none", "EgressSubnetIds": ["subnet-1", "subnet-2"], "EgressSecurityGroupIds": ["sg-1"]}
    failures = []
    for egress, subnets, groups in [
        ("none", None, None),
        ("nat", [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}], [{"Ref": "FunctionSecurityGroup"}]),
        ("subnets", ["subnet-1", "subnet-2"], ["sg-1"]),
    ]:
        params = dict(base, Egress=egress)
        for name, f in sorted(functions.items()):
            role = f["Properties"]["Environment"]["Variables"]["WXDESK_FUNCTION"]
            vpc = value(f["Properties"].get("VpcConfig"), conditions, params) or None
            want = None if subnets is None else {"SubnetIds": subnets, "SecurityGroupIds": groups}
            if vpc != want:
                failures.append(f"egress={egress}: {name} ({role}) has VpcConfig {vpc!r}, wants {want!r}")
        nat = holds({"Condition": "EgressNat"}, conditions, params)
        for r in ["NatGateway", "NatAddress", "PrivateSubnetA", "PrivateSubnetB", "DynamoDbEndpoint", "S3Endpoint"]:
            created = holds({"Condition": res[r]["Condition"]}, conditions, params)
            if created != nat:
                failures.append(f"egress={egress}: {r} created={created}")
        out = outputs.get("EgressAddress")
        if out is None or holds({"Condition": out["Condition"]}, conditions, params) != nat:
            failures.append(f"egress={egress}: EgressAddress output wrong: {out!r}")
    if outputs["EgressAddress"]["Value"] != {"Fn::GetAtt": ["NatAddress", "PublicIp"]}:
        failures.append(f"EgressAddress is {outputs['EgressAddress']['Value']!r}")
    zones = {str(res[s]["Properties"]["AvailabilityZone"]) for s in ["PrivateSubnetA", "PrivateSubnetB"]}
    if len(zones) != 2:
        failures.append(f"the private subnets share a zone: {zones}")
    for f in failures:
        print("FAIL", f)
    print(f"template egress: {len(functions)} functions x 3 choices, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
