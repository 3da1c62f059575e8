"""REALM featurization: BERT input formatting, documents, query masking, example I/O."""

from realm_tf.featurization.bert_inputs import BertInputs, bert_format
from realm_tf.featurization.documents import (NULL_DOCUMENT, Document, document_fingerprint,
                                              get_document_uid, has_duplicates,
                                              has_duplicates_tf, postprocess_candidates,
                                              prepend_null_document, select_candidates_tf)
from realm_tf.featurization.featurizer import (MASKING_OK, MASKS_COVER_NO_TOKENS,
                                               MASKS_WOULD_BE_TRUNCATED, Featurizer,
                                               MaskingError, Query)
