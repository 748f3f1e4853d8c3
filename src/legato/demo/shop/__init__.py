"""The choreographed shop: four services, one broker, no coordinator in the middle."""
