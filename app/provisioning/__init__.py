"""The signed organisation config and the policy it carries."""
