"""CDA R2 documents of the national health-record sharing documents (WS/T 483) with the
WS/T 500 header: hypertension follow-up, type 2 diabetes follow-up, referral record.

Modules (each readable top to bottom; the layout itself is data in ``mappings/cda/``):

* ``parse``: hardened parsing (no DTD, no entities, no network), HL7 date values;
* ``mapping``: the tables of ``mappings/cda/`` (documents, header XPaths, section entries);
* ``header`` / ``body``: write and read the header and the body through those tables;
* ``follow_up_document``: follow-up document <-> ``FollowUpRecord`` (the CSV import's record,
  so CDA and CSV share one mapping to FHIR);
* ``referral_document``: referral record <-> ``ReferralRecord`` <-> ServiceRequest + Task;
* ``store_lookup``: the patient and organisations a document names, found in the store;
* ``document_import`` / ``document_export``: one document in (one transaction) / out (bytes);
* ``cli``: ``import-cda`` and ``export-cda``. The API operations are in
  ``fhir_server/operations/cda.py``.
"""
