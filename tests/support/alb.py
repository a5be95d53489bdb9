"""An ALB on moto for the traffic tests: VPC, subnets, load balancer, listener and target groups made through
the API (moto's CloudFormation cannot build a weighted listener), and a record of the calls a client made.

The listener starts with a fixed 503 response, as a front-door template with no island yet would leave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.aws import REGION, TEMPLATE, aws_client

#: Operations that only read; any other call changes something on AWS.
READ_PREFIXES = ("Describe", "Get", "List")


@dataclass
class Calls:
    """Every operation a client sent, in order (a botocore ``before-call`` hook: what reached moto)."""

    names: list[str] = field(default_factory=list)

    def attach(self, client: Any) -> Any:
        def record(model: Any, **_: Any) -> None:
            self.names.append(str(model.name))

        client.meta.events.register("before-call", record)
        return client

    @property
    def mutating(self) -> list[str]:
        return [n for n in self.names if not n.startswith(READ_PREFIXES)]

    def clear(self) -> None:
        self.names.clear()


@dataclass
class Alb:
    """One load balancer with an HTTP listener on port 80 and a target group per name."""

    elbv2: Any
    listener_arn: str
    dns_name: str
    groups: dict[str, str]

    def weights(self) -> dict[str, int]:
        """The listener's weights as moto stores them, by target group name."""
        listener = self.elbv2.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0]
        (action,) = listener["DefaultActions"]
        names = {arn: name for name, arn in self.groups.items()}
        return {names[g["TargetGroupArn"]]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}

    def group_stickiness(self) -> dict[str, Any]:
        listener = self.elbv2.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0]
        found: dict[str, Any] = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroupStickinessConfig"]
        return found

    def attributes(self, name: str) -> dict[str, str]:
        found = self.elbv2.describe_target_group_attributes(TargetGroupArn=self.groups[name])["Attributes"]
        return {a["Key"]: a["Value"] for a in found}


def build_alb(endpoint: str, names: tuple[str, ...] = ("green", "blue"), deregistration: int = 1) -> Alb:
    """A VPC with two subnets, an internet-facing ALB, its listener, and target groups ``names`` (each with
    a deregistration delay of ``deregistration`` seconds)."""
    ec2 = aws_client("ec2", endpoint)
    elbv2 = aws_client("elbv2", endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    group = ec2.create_security_group(GroupName="front-door", Description="the ALB", VpcId=vpc)["GroupId"]
    balancer = elbv2.create_load_balancer(
        Name="squals-front-door", Subnets=subnets, SecurityGroups=[group], Scheme="internet-facing"
    )["LoadBalancers"][0]
    arns: dict[str, str] = {}
    for name in names:
        arn = elbv2.create_target_group(
            Name=f"tg-{name}", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(deregistration)}],
        )
        arns[name] = arn
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}],
    )["Listeners"][0]
    return Alb(elbv2, listener["ListenerArn"], balancer["DNSName"], arns)


def _front_door(head: str, subnets: str, outputs: str) -> str:
    """A front-door template: ``head`` (description, parameters, network and the ``Door`` security group),
    an internet-facing ALB on ``subnets`` with a listener answering 503 until squals forwards it, the
    ``ListenerArn`` output, then ``outputs``."""
    return (
        head
        + f"""\
  Balancer:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Scheme: internet-facing
      Subnets: {subnets}
      SecurityGroups: [!Ref Door]
  Listener:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref Balancer
      Port: 80
      Protocol: HTTP
      DefaultActions:
        - Type: fixed-response
          FixedResponseConfig:
            StatusCode: "503"
Outputs:
  ListenerArn:
    Value: !Ref Listener
"""
        + outputs
    )


_URL_OUTPUT = '  Url:\n    Value: !Sub "http://${Balancer.DNSName}"\n'

#: A front door as a user would declare it: VPC, two subnets, security group, ALB and a listener answering
#: 503 until squals forwards it to an island. ``Url`` is left out when ``url`` is False (squals then takes
#: the load balancer's DNS name).
FRONT_DOOR_TEMPLATE = _front_door(
    """\
AWSTemplateFormatVersion: "2010-09-09"
Description: the front door of the provider tests
Parameters:
  SqualsProject:
    Type: String
  CidrPrefix:
    Type: String
    Default: "10.30"
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: !Sub "${CidrPrefix}.0.0/16"
  SubnetA:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      CidrBlock: !Sub "${CidrPrefix}.1.0/24"
      AvailabilityZone: !Select [0, !GetAZs ""]
  SubnetB:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      CidrBlock: !Sub "${CidrPrefix}.2.0/24"
      AvailabilityZone: !Select [1, !GetAZs ""]
  Door:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: !Sub "front door of ${SqualsProject}"
      VpcId: !Ref Vpc
      SecurityGroupIngress:
        - IpProtocol: tcp
          FromPort: 80
          ToPort: 80
          CidrIp: 0.0.0.0/0
""",
    "[!Ref SubnetA, !Ref SubnetB]",
    "  VpcId:\n    Value: !Ref Vpc\n" + _URL_OUTPUT,
)

#: A front door in a VPC the islands share (as a user's would be, made before it): its ``VpcId`` and
#: ``Subnets`` are parameters.
FRONT_DOOR_IN_VPC_TEMPLATE = _front_door(
    """\
AWSTemplateFormatVersion: "2010-09-09"
Description: the front door of the blue/green tests
Parameters:
  VpcId:
    Type: AWS::EC2::VPC::Id
  Subnets:
    Type: List<AWS::EC2::Subnet::Id>
Resources:
  Door:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: the front door
      VpcId: !Ref VpcId
""",
    "!Ref Subnets",
    _URL_OUTPUT,
)

#: The provider tests' island (``tests.support.aws.TEMPLATE``) with a target group in the front door's VPC.
ISLAND_TEMPLATE = TEMPLATE.replace(
    "  Greeting:\n",
    "  VpcId:\n    Type: AWS::EC2::VPC::Id\n  Greeting:\n",
).replace(
    "Outputs:\n",
    "  Group:\n    Type: AWS::ElasticLoadBalancingV2::TargetGroup\n    Properties:\n"
    "      VpcId: !Ref VpcId\n      Protocol: HTTP\n      Port: 80\n      TargetType: ip\n"
    "Outputs:\n  TargetGroupArn:\n    Value: !Ref Group\n",
)
#: An island behind a front door that forgot the output the front door forwards to.
ISLAND_WITHOUT_GROUP_OUTPUT = ISLAND_TEMPLATE.replace("  TargetGroupArn:\n    Value: !Ref Group\n", "")
#: An island with a preview rule on the front door's listener (its ARN a parameter), at the priority squals
#: fills in, as ``examples/shop-aws/infra/island.yml`` has: moto refuses a priority the listener holds.
ISLAND_WITH_RULE_TEMPLATE = ISLAND_TEMPLATE.replace(
    "  Greeting:\n",
    "  ListenerArn:\n    Type: String\n  SqualsRulePriority:\n    Type: Number\n  Greeting:\n",
).replace(
    "Outputs:\n",
    "  Preview:\n    Type: AWS::ElasticLoadBalancingV2::ListenerRule\n    Properties:\n"
    "      ListenerArn: !Ref ListenerArn\n      Priority: !Ref SqualsRulePriority\n"
    "      Conditions:\n        - Field: host-header\n          HostHeaderConfig:\n"
    '            Values: [!Sub "${SqualsEnvironment}.preview.test"]\n'
    "      Actions:\n        - Type: forward\n          TargetGroupArn: !Ref Group\n"
    "Outputs:\n",
    1,
)
