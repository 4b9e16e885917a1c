"""HL7 v2 from hospital HIS and LIS: MLLP and files in, FHIR resources out, ACKs back."""
